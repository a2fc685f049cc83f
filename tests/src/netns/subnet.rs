//! The private /30 of each network: 10.251.0.0/16 cut into 16,384 /30s,
//! the host side of the veth on `.1`, the namespace side on `.2`. A subnet
//! is claimed by creating its host-side interface, whose name carries the
//! subnet's index: interface names are unique on the machine, so two tests
//! (in any process) that pick the same subnet cannot both get it.

use std::net::Ipv4Addr;

/// How many /30s 10.251.0.0/16 holds.
const SUBNETS: u32 = 1 << 14;
/// The first address of the range.
const BASE: Ipv4Addr = Ipv4Addr::new(10, 251, 0, 0);

/// One /30 of the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// Position in the range, below [`SUBNETS`].
    index: u32,
}

impl Subnet {
    /// The `index`th /30 (taken modulo the size of the range).
    pub fn new(index: u32) -> Subnet {
        Subnet {
            index: index % SUBNETS,
        }
    }

    /// Every subnet once, starting at `seed` (spreads parallel tests apart).
    pub fn candidates(seed: u32) -> impl Iterator<Item = Subnet> {
        (0..SUBNETS).map(move |i| Subnet::new(seed.wrapping_add(i)))
    }

    /// The host side of the veth pair (`.1`).
    pub fn host_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network() + 1)
    }

    /// The namespace side of the veth pair (`.2`).
    pub fn inside_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network() + 2)
    }

    /// Name of the host-side interface (at most 15 bytes, as Linux requires).
    pub fn host_interface(&self) -> String {
        format!("pgv{}h", self.index)
    }

    /// Name of the interface inside the namespace.
    pub fn inside_interface(&self) -> String {
        format!("pgv{}n", self.index)
    }

    /// Whether this /30 overlaps the network `address/prefix`.
    pub fn overlaps(&self, address: Ipv4Addr, prefix: u8) -> bool {
        let mask = |bits: u8| u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
        // Two prefixes overlap when the shorter one contains the other.
        let shorter = mask(prefix.min(30));
        (u32::from(address) & shorter) == (self.network() & shorter)
    }

    fn network(&self) -> u32 {
        u32::from(BASE) + self.index * 4
    }
}

/// The `address/prefix` pairs in the output of `ip -4 -o addr show`.
pub fn networks_in_use(ip_output: &str) -> Vec<(Ipv4Addr, u8)> {
    ip_output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet")?;
            let (address, prefix) = words.next()?.split_once('/')?;
            Some((address.parse().ok()?, prefix.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_subnet_holds_the_host_side_then_the_namespace_side() {
        let first = Subnet::new(0);
        assert_eq!(first.host_address(), Ipv4Addr::new(10, 251, 0, 1));
        assert_eq!(first.inside_address(), Ipv4Addr::new(10, 251, 0, 2));
        let later = Subnet::new(65);
        assert_eq!(later.host_address(), Ipv4Addr::new(10, 251, 1, 5));
        assert_eq!(later.inside_address(), Ipv4Addr::new(10, 251, 1, 6));
        let last = Subnet::new(SUBNETS - 1);
        assert_eq!(last.inside_address(), Ipv4Addr::new(10, 251, 255, 254));
        assert_eq!(Subnet::new(SUBNETS), first, "indexes wrap around");
    }

    #[test]
    fn interface_names_fit_linux_and_name_the_subnet() {
        let last = Subnet::new(SUBNETS - 1);
        assert_eq!(last.host_interface(), "pgv16383h");
        assert_eq!(last.inside_interface(), "pgv16383n");
        assert!(last.host_interface().len() <= 15);
    }

    #[test]
    fn candidates_visit_every_subnet_once_from_the_seed() {
        let all: Vec<Subnet> = Subnet::candidates(SUBNETS - 2).collect();
        assert_eq!(all.len(), SUBNETS as usize);
        assert_eq!(all[0], Subnet::new(SUBNETS - 2));
        assert_eq!(all[2], Subnet::new(0));
        let mut indexes: Vec<u32> = all.iter().map(|s| s.index).collect();
        indexes.sort_unstable();
        indexes.dedup();
        assert_eq!(indexes.len(), SUBNETS as usize);
    }

    #[test]
    fn overlap_covers_wider_narrower_and_disjoint_networks() {
        let subnet = Subnet::new(65); // 10.251.1.4/30
        assert!(subnet.overlaps(Ipv4Addr::new(10, 251, 1, 6), 32));
        assert!(subnet.overlaps(Ipv4Addr::new(10, 251, 1, 5), 30));
        assert!(subnet.overlaps(Ipv4Addr::new(10, 0, 0, 1), 8));
        assert!(subnet.overlaps(Ipv4Addr::new(1, 2, 3, 4), 0));
        assert!(!subnet.overlaps(Ipv4Addr::new(10, 251, 1, 8), 30));
        assert!(!subnet.overlaps(Ipv4Addr::new(10, 251, 1, 3), 32));
        assert!(!subnet.overlaps(Ipv4Addr::new(127, 0, 0, 1), 8));
    }

    #[test]
    fn networks_in_use_are_read_from_ip_addr_output() {
        let output = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
                      2: eth0    inet 10.251.0.9/24 brd 10.251.0.255 scope global eth0\\       valid_lft forever\n\
                      garbage line\n";
        assert_eq!(
            networks_in_use(output),
            vec![
                (Ipv4Addr::new(127, 0, 0, 1), 8),
                (Ipv4Addr::new(10, 251, 0, 9), 24)
            ]
        );
    }
}
