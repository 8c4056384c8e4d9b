//! Who may do what on the Admin API.
//!
//! Over the Unix socket the kernel tells us the caller (SO_PEERCRED): root,
//! the collector's own user and members of the admin group may operate
//! (remove nodes, manage tokens, drills with real actions, power actions);
//! anyone else who can open the socket (mode 0660, group nodewarden) may read.
//! A layer on the admin server stamps each request with its [`Caller`];
//! handlers call [`require`].

use tonic::{Request, Status};

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    /// Queries: nodes, history, events, plans, token list.
    Read,
    /// Anything that changes the cluster or the trust: node removal, tokens,
    /// drills with real actions, power actions.
    Operate,
}

/// The caller of one Admin request, as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub pid: Option<i32>,
    pub allowed: Permission,
}

/// Who may operate: root, the collector's own user, members of `admin_group`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub admin_group: String,
    own_uid: u32,
}

impl Policy {
    /// A policy granting Operate to members of `admin_group`.
    pub fn new(admin_group: &str) -> Policy {
        Policy {
            admin_group: admin_group.to_string(),
            own_uid: nix::unistd::geteuid().as_raw(),
        }
    }

    /// The permission of a peer with these credentials.
    pub fn allowed(&self, uid: u32, gid: u32) -> Permission {
        if uid == 0 || uid == self.own_uid {
            return Permission::Operate;
        }
        let group = match nix::unistd::Group::from_name(&self.admin_group) {
            Ok(Some(g)) => g,
            _ => return Permission::Read,
        };
        if group.gid.as_raw() == gid {
            return Permission::Operate;
        }
        // Supplementary groups: SO_PEERCRED carries only the primary one.
        let member = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .is_some_and(|u| group.mem.contains(&u.name));
        if member {
            Permission::Operate
        } else {
            Permission::Read
        }
    }

    /// Stamps a request with its [`Caller`] (tonic interceptor body).
    pub fn stamp(&self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let info = request
            .extensions()
            .get::<tonic::transport::server::UdsConnectInfo>()
            .and_then(|i| i.peer_cred);
        if let Some(cred) = info {
            let caller = Caller {
                uid: cred.uid(),
                pid: cred.pid(),
                allowed: self.allowed(cred.uid(), cred.gid()),
            };
            request.extensions_mut().insert(caller);
        }
        Ok(request)
    }
}

/// Who made the call, for the records of `power arm` and `hold`: the user
/// name of the caller's uid ("uid N" without one), "unknown" without
/// peer credentials.
pub fn caller_name<T>(request: &Request<T>) -> String {
    let Some(caller) = request.extensions().get::<Caller>() else {
        return "unknown".into();
    };
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(caller.uid))
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {}", caller.uid), |u| u.name)
}

/// Refuses the call unless its caller holds `need`. A request with no
/// [`Caller`] (not through the stamping layer) is refused: fail closed.
pub fn require<T>(request: &Request<T>, need: Permission) -> Result<(), Status> {
    let Some(caller) = request.extensions().get::<Caller>() else {
        return Err(Status::permission_denied(
            "the caller is unknown (no peer credentials); use the admin socket",
        ));
    };
    if caller.allowed >= need {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "uid {} may only read; this needs {need:?}: run it as root or as a member of the admin group (`admin_group` in collector.toml)",
            caller.uid
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_operates_and_a_stranger_only_reads() {
        let p = Policy::new("no-such-group-nodewarden-test");
        assert_eq!(p.allowed(0, 0), Permission::Operate);
        assert_eq!(p.allowed(65534, 65534), Permission::Read);
    }

    #[test]
    fn require_fails_closed_and_ranks_permissions() {
        let r = Request::new(());
        assert_eq!(
            require(&r, Permission::Read).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        let mut r = Request::new(());
        r.extensions_mut().insert(Caller {
            uid: 1000,
            pid: None,
            allowed: Permission::Read,
        });
        assert!(require(&r, Permission::Read).is_ok());
        assert_eq!(
            require(&r, Permission::Operate).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }
}
