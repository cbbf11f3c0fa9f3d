//! The per-client cap: how many connections each client address (IPv6: its
//! /64) holds, so one client cannot take every connection with slow
//! requests. Trusted proxies, which carry many clients, are exempt.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

/// How many connections each client address holds, for the per-client cap.
pub(super) struct ClientSlots {
    pub(super) max: usize,
    pub(super) exempt: Arc<[IpNet]>,
    pub(super) held: Mutex<HashMap<IpAddr, usize>>,
}

/// One client's connection, counted until it is dropped.
pub(super) struct Slot {
    slots: Arc<ClientSlots>,
    key: Option<IpAddr>,
}

impl ClientSlots {
    /// The address connections are counted under: IPv4 as is (IPv4-mapped
    /// IPv6 read as IPv4), IPv6 by its /64.
    fn key(ip: IpAddr) -> IpAddr {
        match crate::client_ip::canonical(ip) {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            v4 => v4,
        }
    }

    /// A slot for a new connection from `peer`, or None when it holds its share.
    pub(super) fn take(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        if crate::client_ip::is_trusted(peer, &self.exempt) {
            return Some(Slot { slots: self.clone(), key: None });
        }
        let key = Self::key(peer);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot { slots: self.clone(), key: Some(key) })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&key);
            }
        }
    }
}
