//! A name resolver the tests control: the guard must refuse a name for what it resolves
//! to, so the tests need names that resolve to loopback, private space or a mix.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use crate::fetch::client::{HostLookup, SystemLookup};

/// Resolves the names it was given to their addresses; any other name goes to the
/// system resolver (so `localhost` still resolves as it does in production).
#[derive(Debug, Clone, Default)]
pub struct StaticLookup {
    names: HashMap<String, Vec<IpAddr>>,
}

impl StaticLookup {
    /// `name` resolves to `addrs` (an empty list: resolves to nothing).
    pub fn with(mut self, name: &str, addrs: &[&str]) -> Self {
        let addrs = addrs
            .iter()
            .map(|a| a.parse().expect("an IP address"))
            .collect();
        self.names.insert(name.to_ascii_lowercase(), addrs);
        self
    }
}

impl HostLookup for StaticLookup {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        match self.names.get(&host.to_ascii_lowercase()) {
            Some(addrs) => {
                let addrs = addrs.clone();
                Box::pin(async move { Ok(addrs) })
            }
            None => SystemLookup.lookup(host),
        }
    }
}
