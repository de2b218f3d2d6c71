"""Who may do what: PVE's ACL model for the emulated users and API tokens.

After pve-access-control (5ccd07d):

- Roles: the built-in roles of `specs.BUILTIN_ROLES` (`AccessControl.pm` `create_roles`).
- ACL paths: `AccessControl.pm` `roles` (l.1788-): walking from `/` to the checked path, an ACL
  entry of the user (or token) applies at its own path and, if it propagates, below it; a deeper
  entry replaces what was inherited. Groups are not modelled.
- Pools: `src/PVE/RPCEnvironment.pm` `$compile_acl_path` (l.38-81): the roles on `/pool/<name>`
  apply to the `/vms/<id>` of the pool's members (never propagating), unless the path has its
  own ACL.
- Tokens: `RPCEnvironment.pm` `permissions` (l.136-176): `root@pam` has every privilege; a token
  without privilege separation has its user's privileges; a privilege-separated token has the
  intersection of its own ACLs with its user's (root@pam's tokens are not intersected, l.100).
- Checks: `check` (l.291-305) names the first missing privilege, `check_any` (l.307-326) all of
  them joined by `|`; `get_effective_permissions` (l.241-289) is what `/access/permissions`
  lists: the default paths, every ACL path and the pool members' paths, each with the privileges
  set there (value: the propagate flag), paths without privileges left out.

Cluster files describe this with `users[].privileges` and `tokens[].privileges` (a shorthand for
a propagating ACL on `/`), `tokens[].privsep` and `acls:` (per path, for a user or token, with
built-in role names or privilege lists).

Imports: stdlib and the emulator's `specs` and `cluster`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pvetool.emulator.cluster import PveError
from pvetool.emulator.specs import BUILTIN_ROLES, PRIVILEGES, ClusterSpec

__all__ = ["AccessModel", "Caller", "EFFECTIVE_DEFAULT_PATHS"]

# RPCEnvironment.pm get_effective_permissions (l.245-254).
EFFECTIVE_DEFAULT_PATHS = (
    "/",
    "/access",
    "/access/groups",
    "/nodes",
    "/pool",
    "/sdn",
    "/storage",
    "/vms",
)

Privs = dict[str, int]  # privilege -> propagate flag (0/1)


@dataclass
class _Acl:
    path: str
    subject: str  # user id or token id
    role: str  # a built-in role name or an anonymous role of listed privileges
    propagate: bool


@dataclass
class AccessModel:
    """The ACL tree of a cluster, and the users' and tokens' privileges on any path."""

    roles: dict[str, frozenset[str]]
    acls: list[_Acl]
    privsep: dict[str, bool]  # token id -> privilege separation
    users: set[str]
    pool_members: dict[str, set[int]]  # pool -> vmids
    _cache: dict[tuple[str, str], Privs] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: ClusterSpec) -> AccessModel:
        roles = dict(BUILTIN_ROLES)
        acls: list[_Acl] = []

        def add(
            path: str,
            subject: str,
            role_names: Iterable[str],
            privs: Iterable[str] | None,
            propagate: bool,
        ) -> None:
            for name in role_names:
                acls.append(_Acl(path, subject, name, propagate))
            if privs is not None:
                anon = f"_privs{len(roles)}"
                roles[anon] = frozenset(privs)
                acls.append(_Acl(path, subject, anon, propagate))

        users = {u.id for u in spec.users} | {"root@pam"}
        privsep: dict[str, bool] = {}
        for u in spec.users:
            if u.id != "root@pam" and u.privileges is not None:
                add("/", u.id, (), u.privileges, True)
            elif u.id != "root@pam":
                add("/", u.id, ("Administrator",), None, True)
        for t in spec.tokens:
            users.add(t.id.split("!", 1)[0])
            privsep[t.id] = t.privsep
            if t.privsep:
                if t.privileges is None:
                    add("/", t.id, ("Administrator",), None, True)
                else:
                    add("/", t.id, (), t.privileges, True)
        for a in spec.acls:
            add(a.path, a.subject, a.roles, a.privileges, a.propagate)
        pools: dict[str, set[int]] = {name: set() for name in spec.pools}
        for g in spec.guests.values():
            if g.pool:
                pools.setdefault(g.pool, set()).add(g.vmid)
        return cls(roles, acls, privsep, users, pools)

    # -- AccessControl.pm roles + RPCEnvironment.pm $compile_acl_path / permissions ----------
    def _roles(self, subject: str, path: str) -> dict[str, int]:
        parts = [""] if path == "/" else path.split("/")
        roles: dict[str, int] = {}
        prefix = ""
        for i, part in enumerate(parts):
            prefix = "/" if i == 0 else (prefix.rstrip("/") + "/" + part)
            final = i == len(parts) - 1
            new = {
                a.role: int(a.propagate)
                for a in self.acls
                if a.subject == subject and a.path == prefix and (final or a.propagate)
            }
            if new:
                roles = new  # a deeper ACL replaces what was inherited
        return roles

    def _pool_roles(self, subject: str, path: str) -> dict[str, int]:
        if not path.startswith("/vms/"):
            return {}
        vmid_text = path[len("/vms/") :]
        out: dict[str, int] = {}
        for pool, members in self.pool_members.items():
            if vmid_text.isdigit() and int(vmid_text) in members:
                for role in self._roles(subject, f"/pool/{pool}"):
                    out[role] = 0
        return out

    def _compile(self, subject: str, path: str) -> Privs:
        roles = self._roles(subject, path)
        pool_roles = self._pool_roles(subject, path)
        if pool_roles and "NoAccess" not in roles:
            if "NoAccess" in pool_roles:
                roles = {"NoAccess": 0}
            else:
                for role in pool_roles:
                    roles.setdefault(role, 0)
        privs: Privs = {}
        for role, propagate in roles.items():
            for priv in self.roles.get(role, ()):
                privs[priv] = int(privs.get(priv, 0) or propagate)
        return privs

    def permissions(self, authid: str, path: str) -> Privs:
        """RPCEnvironment.pm permissions: privilege -> propagate flag for `authid` on `path`."""
        key = (authid, path)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if authid == "root@pam":
            result: Privs = dict.fromkeys(self.roles["Administrator"], 1)
        elif "!" in authid:
            user = authid.split("!", 1)[0]
            if authid not in self.privsep:
                result = {}
            elif not self.privsep[authid]:
                result = self.permissions(user, path)
            else:
                own = self._compile(authid, path)
                if user == "root@pam":
                    result = own
                else:
                    user_privs = self.permissions(user, path)
                    result = {
                        p: int(bool(user_privs[p] and own[p])) for p in own if p in user_privs
                    }
        elif authid in self.users:
            result = self._compile(authid, path)
        else:
            result = {}
        self._cache[key] = result
        return result

    def effective(self, authid: str) -> dict[str, Privs]:
        """RPCEnvironment.pm get_effective_permissions (l.241-289)."""
        paths = dict.fromkeys(EFFECTIVE_DEFAULT_PATHS)
        for a in self.acls:
            paths.setdefault(a.path)
        for members in self.pool_members.values():
            for vmid in sorted(members):
                paths.setdefault(f"/vms/{vmid}")
        out: dict[str, Privs] = {}
        for path in paths:
            privs = self.permissions(authid, path)
            if privs:
                out[path] = dict(sorted(privs.items()))
        return out


@dataclass
class Caller:
    """The authenticated caller (`root@pam`, `auditor@pve`, `root@pam!pvetool`) and the model
    that says what it may do."""

    authid: str
    model: AccessModel | None = None  # None: every privilege everywhere (tests' stand-in)

    @property
    def user(self) -> str:
        return self.authid.split("!", 1)[0]

    def privs(self, path: str) -> Mapping[str, int]:
        if self.model is None:
            return dict.fromkeys(PRIVILEGES, 1)
        return self.model.permissions(self.authid, path)

    def has(self, path: str, privs: Iterable[str], any_of: bool = False) -> bool:
        have = self.privs(path)
        wanted = list(privs)
        if any_of:
            return any(p in have for p in wanted)
        return all(p in have for p in wanted)

    def check(self, path: str, privs: Iterable[str], any_of: bool = False) -> None:
        """RPCEnvironment.pm check / check_any: 403 naming the first missing privilege (all)
        or every privilege joined by `|` (any)."""
        have = self.privs(path)
        wanted = list(privs)
        if any_of:
            if not any(p in have for p in wanted):
                raise PveError(403, f"Permission check failed ({path}, {'|'.join(wanted)})")
            return
        for priv in wanted:
            if priv not in have:
                raise PveError(403, f"Permission check failed ({path}, {priv})")

    @property
    def is_superuser(self) -> bool:
        """Every privilege on / (what the emulator's control routes require)."""
        return self.has("/", PRIVILEGES)
