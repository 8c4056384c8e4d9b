//! The hosts that follow a UPS through the NUT server (a NAS, Proxmox, a
//! Windows box running upsmon): each is a host in its UPS's power sequence,
//! named `nut:<address>`, the way an agent's node is named by its node name.
//!
//! A host is an address with at least one logged-in session (NUT's `LOGIN`:
//! only upsmon-like clients log in; upsc and dashboards only read). Its
//! first login and its last logout go on the hub's news as `Connected` and
//! `Disconnected`, so the power sequence waits for it exactly as it waits
//! for an agent. FSD is raised per host, not per UPS as upsd does: that is
//! what lets the sequence order the hosts (the NAS after the servers that
//! use it). A raised FSD lasts until the host's last session ends: when it
//! boots again it logs in to a clean status.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::broadcast;

use super::hub::HubEvent;

/// What every NUT host's name starts with.
pub const PREFIX: &str = "nut:";

/// Hosts logged out this long are forgotten (a NAS unplugged for good must
/// not stay in every plan).
const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

/// The sequence's name for the host at `ip`.
pub fn host_name(ip: IpAddr) -> String {
    format!("{PREFIX}{ip}")
}

/// Whether `node` names a NUT host rather than an agent's node.
pub fn is_nut_host(node: &str) -> bool {
    node.starts_with(PREFIX)
}

/// The UPS a host follows: the agent that reads it and its name there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FollowedUps {
    /// The agent's node.
    pub owner: String,
    /// The UPS's name in that agent's config.
    pub ups: String,
}

/// A NUT host as the power sequence and the CLI see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NutHost {
    /// `nut:<address>`.
    pub name: String,
    /// The UPSes it logged in to.
    pub follows: BTreeSet<FollowedUps>,
    /// The user names it logged in with.
    pub users: BTreeSet<String>,
    /// Logged-in sessions now (0: logged out).
    pub sessions: usize,
    /// FSD raised for it and not yet followed by its logout.
    pub fsd: bool,
    /// Its last login or logout (Unix ms).
    pub changed_ms: i64,
}

impl NutHost {
    /// Logged in now.
    pub fn online(&self) -> bool {
        self.sessions > 0
    }
}

/// Why FSD could not be raised for a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaiseError {
    /// No session of it is logged in: it cannot see an FSD.
    #[error("{0} is not logged in to the NUT server")]
    NotLoggedIn(String),
}

/// Every NUT host since the collector started, by name.
#[derive(Debug)]
pub struct NutHosts {
    hosts: Mutex<BTreeMap<String, NutHost>>,
    news: broadcast::Sender<HubEvent>,
}

impl NutHosts {
    /// A registry that tells `news` of first logins and last logouts.
    pub fn new(news: broadcast::Sender<HubEvent>) -> Self {
        NutHosts {
            hosts: Mutex::new(BTreeMap::new()),
            news,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, NutHost>> {
        // Plain data: a panicked holder left nothing half-done worth refusing.
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A session from `ip` logged in to `ups` as `user`.
    pub fn login(&self, ip: IpAddr, ups: FollowedUps, user: &str, now_ms: i64) {
        let name = host_name(ip);
        let first = {
            let mut hosts = self.lock();
            hosts.retain(|_, h| h.online() || now_ms - h.changed_ms < FORGET_AFTER_MS);
            let host = hosts.entry(name.clone()).or_insert_with(|| NutHost {
                name: name.clone(),
                follows: BTreeSet::new(),
                users: BTreeSet::new(),
                sessions: 0,
                fsd: false,
                changed_ms: now_ms,
            });
            host.follows.insert(ups);
            host.users.insert(user.to_string());
            host.sessions += 1;
            host.changed_ms = now_ms;
            host.sessions == 1
        };
        if first {
            let _ = self.news.send(HubEvent::Connected(name));
        }
    }

    /// A logged-in session from `ip` ended.
    pub fn logout(&self, ip: IpAddr, now_ms: i64) {
        let name = host_name(ip);
        let last = {
            let mut hosts = self.lock();
            let Some(host) = hosts.get_mut(&name) else {
                return;
            };
            host.sessions = host.sessions.saturating_sub(1);
            host.changed_ms = now_ms;
            if host.sessions == 0 {
                // It is going down (or gone): it must boot to a clean status.
                host.fsd = false;
            }
            host.sessions == 0
        };
        if last {
            let _ = self.news.send(HubEvent::Disconnected(name));
        }
    }

    /// Raises FSD for `name`: every UPS status its sessions read says FSD
    /// until it logs out.
    pub fn raise_fsd(&self, name: &str) -> Result<(), RaiseError> {
        match self.lock().get_mut(name) {
            Some(h) if h.online() => {
                h.fsd = true;
                Ok(())
            }
            _ => Err(RaiseError::NotLoggedIn(name.to_string())),
        }
    }

    /// Whether the host at `ip` has FSD raised.
    pub fn fsd_for(&self, ip: IpAddr) -> bool {
        self.lock().get(&host_name(ip)).is_some_and(|h| h.fsd)
    }

    /// Whether `name` is logged in now.
    pub fn online(&self, name: &str) -> bool {
        self.lock().get(name).is_some_and(NutHost::online)
    }

    /// One host.
    pub fn get(&self, name: &str) -> Option<NutHost> {
        self.lock().get(name).cloned()
    }

    /// Every host known, by name.
    pub fn hosts(&self) -> Vec<NutHost> {
        self.lock().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ups() -> FollowedUps {
        FollowedUps {
            owner: "s1".into(),
            ups: "rack".into(),
        }
    }

    fn news(rx: &mut broadcast::Receiver<HubEvent>) -> Vec<String> {
        let mut v = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            v.push(match ev {
                HubEvent::Connected(n) => format!("+{n}"),
                HubEvent::Disconnected(n) => format!("-{n}"),
                other => format!("{other:?}"),
            });
        }
        v
    }

    #[test]
    fn a_host_is_online_from_its_first_login_to_its_last_logout() {
        let (tx, mut rx) = broadcast::channel(16);
        let hosts = NutHosts::new(tx);
        let ip: IpAddr = "192.168.1.20".parse().unwrap();
        hosts.login(ip, ups(), "monuser", 1);
        hosts.login(ip, ups(), "monuser", 2);
        assert!(hosts.online("nut:192.168.1.20"));
        hosts.logout(ip, 3);
        assert!(hosts.online("nut:192.168.1.20"), "one session is left");
        hosts.logout(ip, 4);
        assert!(!hosts.online("nut:192.168.1.20"));
        assert_eq!(
            news(&mut rx),
            ["+nut:192.168.1.20", "-nut:192.168.1.20"],
            "one piece of news per host, not per session"
        );
    }

    #[test]
    fn fsd_is_per_host_and_ends_with_its_logout() {
        let (tx, _rx) = broadcast::channel(16);
        let hosts = NutHosts::new(tx);
        let nas: IpAddr = "10.0.0.5".parse().unwrap();
        let pve: IpAddr = "10.0.0.6".parse().unwrap();
        hosts.login(nas, ups(), "monuser", 1);
        hosts.login(pve, ups(), "monuser", 1);
        hosts.raise_fsd("nut:10.0.0.5").unwrap();
        assert!(hosts.fsd_for(nas));
        assert!(!hosts.fsd_for(pve), "the other host is not told yet");
        hosts.logout(nas, 2);
        hosts.login(nas, ups(), "monuser", 3);
        assert!(!hosts.fsd_for(nas), "booted again: a clean status");
        assert_eq!(
            hosts.raise_fsd("nut:10.0.0.7"),
            Err(RaiseError::NotLoggedIn("nut:10.0.0.7".into()))
        );
    }

    #[test]
    fn hosts_gone_for_a_day_are_forgotten() {
        let (tx, _rx) = broadcast::channel(16);
        let hosts = NutHosts::new(tx);
        let old: IpAddr = "10.0.0.5".parse().unwrap();
        hosts.login(old, ups(), "monuser", 0);
        hosts.logout(old, 1);
        hosts.login("10.0.0.6".parse().unwrap(), ups(), "monuser", 2);
        assert_eq!(hosts.hosts().len(), 2, "logged out an hour ago: kept");
        hosts.login("10.0.0.7".parse().unwrap(), ups(), "u", FORGET_AFTER_MS + 5);
        let names: Vec<String> = hosts.hosts().into_iter().map(|h| h.name).collect();
        assert_eq!(names, ["nut:10.0.0.6", "nut:10.0.0.7"]);
    }
}
