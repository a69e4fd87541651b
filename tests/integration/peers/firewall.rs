//! Firewalls, in a network namespace of our own so that its iptables rules touch nothing
//! else: a dropped SYN (the connect times out), rejects of every kind, a local policy that
//! refuses the connect itself (EACCES), and middleboxes that let the connection open and then
//! interfere (an `smtp-sink` behind them).

use super::sink::sink;
use super::support::{
    Case, Expect, Group, Need, Netns, Place, Target, failing, free_port, run_area, scratch_dir,
};

pub const NEEDS: &[Need] = &[
    Need::Root,
    Need::Tool("ip"),
    Need::Tool("iptables"),
    Need::Tool("smtp-sink"),
    Need::Tool("ss"),
];

#[test]
fn firewall_rules() {
    run_area(
        "firewall rules in a network namespace",
        NEEDS,
        || Place::Netns(Netns::new("fw")),
        start,
    );
}

/// A rule for `PORT`: the command that adds it, `{port}` replaced by the case's port.
struct Rule {
    name: &'static str,
    what: &'static str,
    command: &'static str,
    /// Whether an smtp-sink listens behind the rule.
    server: bool,
    expect: Expect,
}

fn rules() -> Vec<Rule> {
    let rule = |name, what, command, expect| Rule {
        name,
        what,
        command,
        server: false,
        expect,
    };
    let behind = |name, what, text, expect| Rule {
        server: true,
        ..rule(name, what, text, expect)
    };
    let timed_out = || failing("450 4.4.315", "connect").message("Socket error code 10060");
    let refused = |message| failing("450 4.4.316", "connect").message(message);
    vec![
        rule(
            "fw-drop",
            "drops the SYN",
            "iptables -A INPUT -p tcp --dport {port} -j DROP",
            timed_out(),
        ),
        rule(
            "fw-drop-outbound",
            "drops the SYN on the way out",
            "iptables -A OUTPUT -p tcp --dport {port} -j DROP",
            timed_out(),
        ),
        rule(
            "fw-reject-tcp-reset",
            "rejects with a TCP reset",
            "iptables -A INPUT -p tcp --dport {port} -j REJECT --reject-with tcp-reset",
            refused("Socket error code 10061"),
        ),
        rule(
            "fw-reject-port-unreachable",
            "rejects with ICMP port unreachable",
            "iptables -A INPUT -p tcp --dport {port} -j REJECT --reject-with icmp-port-unreachable",
            refused("Socket error code 10061"),
        ),
        rule(
            "fw-reject-host-unreachable",
            "rejects with ICMP host unreachable",
            "iptables -A INPUT -p tcp --dport {port} -j REJECT --reject-with icmp-host-unreachable",
            refused("Socket error code 10065"),
        ),
        rule(
            "fw-reject-net-unreachable",
            "rejects with ICMP network unreachable",
            "iptables -A INPUT -p tcp --dport {port} -j REJECT --reject-with icmp-net-unreachable",
            refused("Socket error code 10051"),
        ),
        // The local host's own policy refuses the connect before a packet is sent: the kernel
        // answers connect() with EACCES, as a local firewall does (WSAEACCES, 10013, on
        // Windows). A policy-routing rule does it for one port; an iptables DROP in OUTPUT
        // does not, since Linux retries a dropped SYN until the timeout (`fw-drop-outbound`).
        rule(
            "fw-local-policy-prohibit",
            "local policy prohibits the route (connect fails with EACCES)",
            "ip rule add pref 5 ipproto tcp dport {port} prohibit",
            failing("450 4.4.316", "connect").message("Socket error code 10013"),
        ),
        rule(
            "fw-reject-admin-prohibited",
            "rejects with ICMP administratively prohibited",
            "iptables -A INPUT -p tcp --dport {port} -j REJECT --reject-with icmp-admin-prohibited",
            failing("450 4.4.316", "connect"),
        ),
        behind(
            "fw-greeting-dropped",
            "lets the connection open, drops the server's data",
            "iptables -A OUTPUT -p tcp --sport {port} --tcp-flags PSH PSH -j DROP",
            failing("450 4.4.318", "banner").message("SuspiciousRemoteServerError"),
        ),
        behind(
            "fw-ehlo-reset",
            "resets the connection when it sees EHLO",
            "iptables -A INPUT -p tcp --dport {port} -m string --string EHLO --algo bm -j REJECT --reject-with tcp-reset",
            failing("450 4.4.318", "ehlo").message("SuspiciousRemoteServerError"),
        ),
        behind(
            "fw-ehlo-dropped",
            "drops EHLO",
            "iptables -A INPUT -p tcp --dport {port} -m string --string EHLO --algo bm -j DROP",
            failing("450 4.4.318", "ehlo").message("SuspiciousRemoteServerError"),
        ),
    ]
}

/// Adds the rules to `place`'s namespace and starts the servers behind them.
pub fn start(place: &Place) -> Group {
    let ns = place
        .netns()
        .expect("firewall rules need a network namespace");
    let mut group = Group::new(scratch_dir());
    // Loopback routes live in the `local` table, looked up by the rule at preference 0,
    // before any rule that could be added; moved behind preference 5 so that a policy rule
    // can apply to 127.0.0.1. Nothing else changes: every other lookup ends as before.
    ns.exec(&["ip", "rule", "add", "pref", "10", "lookup", "local"]);
    ns.exec(&["ip", "rule", "del", "pref", "0", "lookup", "local"]);
    for r in rules() {
        let port = if r.server {
            let (daemon, port) = sink(place, group.dir.path(), r.name, &[], "127.0.0.1");
            group.daemons.push(daemon);
            port
        } else {
            free_port()
        };
        let command = r.command.replace("{port}", &port.to_string());
        ns.exec(&command.split_whitespace().collect::<Vec<_>>());
        let peer = if r.server {
            format!("{}, smtp-sink behind it (`{command}`)", r.what)
        } else {
            format!("{} (`{command}`)", r.what)
        };
        let target = Target::Smart {
            host: "127.0.0.1".into(),
            port,
        };
        group.cases.push(Case::new(r.name, peer, target, r.expect));
    }
    group
}
