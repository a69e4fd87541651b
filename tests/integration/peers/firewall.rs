//! Firewalls, in a network namespace of our own so that its iptables rules touch nothing
//! else: a dropped SYN (the connect times out), rejects of every kind, and middleboxes that
//! let the connection open and then interfere (an `smtp-sink` behind them).

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

/// A rule for `PORT`: `{port}` in the text is replaced by the case's port.
struct Rule {
    name: &'static str,
    what: &'static str,
    rule: &'static str,
    /// Whether an smtp-sink listens behind the rule.
    server: bool,
    expect: Expect,
}

fn rules() -> Vec<Rule> {
    let rule = |name, what, rule, expect| Rule {
        name,
        what,
        rule,
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
            "INPUT -p tcp --dport {port} -j DROP",
            timed_out(),
        ),
        rule(
            "fw-drop-outbound",
            "drops the SYN on the way out",
            "OUTPUT -p tcp --dport {port} -j DROP",
            timed_out(),
        ),
        rule(
            "fw-reject-tcp-reset",
            "rejects with a TCP reset",
            "INPUT -p tcp --dport {port} -j REJECT --reject-with tcp-reset",
            refused("Socket error code 10061"),
        ),
        rule(
            "fw-reject-port-unreachable",
            "rejects with ICMP port unreachable",
            "INPUT -p tcp --dport {port} -j REJECT --reject-with icmp-port-unreachable",
            refused("Socket error code 10061"),
        ),
        rule(
            "fw-reject-host-unreachable",
            "rejects with ICMP host unreachable",
            "INPUT -p tcp --dport {port} -j REJECT --reject-with icmp-host-unreachable",
            refused("Socket error code 10065"),
        ),
        rule(
            "fw-reject-net-unreachable",
            "rejects with ICMP network unreachable",
            "INPUT -p tcp --dport {port} -j REJECT --reject-with icmp-net-unreachable",
            refused("Socket error code 10051"),
        ),
        rule(
            "fw-reject-admin-prohibited",
            "rejects with ICMP administratively prohibited",
            "INPUT -p tcp --dport {port} -j REJECT --reject-with icmp-admin-prohibited",
            failing("450 4.4.316", "connect"),
        ),
        behind(
            "fw-greeting-dropped",
            "lets the connection open, drops the server's data",
            "OUTPUT -p tcp --sport {port} --tcp-flags PSH PSH -j DROP",
            failing("450 4.4.318", "banner").message("Socket error code 10060"),
        ),
        behind(
            "fw-ehlo-reset",
            "resets the connection when it sees EHLO",
            "INPUT -p tcp --dport {port} -m string --string EHLO --algo bm -j REJECT --reject-with tcp-reset",
            failing("450 4.4.318", "ehlo").message("Socket error code 10054"),
        ),
        behind(
            "fw-ehlo-dropped",
            "drops EHLO",
            "INPUT -p tcp --dport {port} -m string --string EHLO --algo bm -j DROP",
            failing("450 4.4.318", "ehlo").message("Socket error code 10060"),
        ),
    ]
}

/// Adds the rules to `place`'s namespace and starts the servers behind them.
pub fn start(place: &Place) -> Group {
    let ns = place
        .netns()
        .expect("firewall rules need a network namespace");
    let mut group = Group::new(scratch_dir());
    for r in rules() {
        let port = if r.server {
            let (daemon, port) = sink(place, group.dir.path(), r.name, &[], "127.0.0.1");
            group.daemons.push(daemon);
            port
        } else {
            free_port()
        };
        let rule = r.rule.replace("{port}", &port.to_string());
        let mut args = vec!["iptables", "-A"];
        args.extend(rule.split_whitespace());
        ns.exec(&args);
        let peer = if r.server {
            format!("iptables: {}, smtp-sink behind it (`-A {rule}`)", r.what)
        } else {
            format!("iptables: {} (`-A {rule}`)", r.what)
        };
        let target = Target::Smart {
            host: "127.0.0.1".into(),
            port,
        };
        group.cases.push(Case::new(r.name, peer, target, r.expect));
    }
    group
}
