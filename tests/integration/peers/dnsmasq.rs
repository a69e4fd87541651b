//! A real DNS server, dnsmasq, authoritative for `lab.test` (`--local`, so unknown names get
//! NXDOMAIN), and answering the other failures as it really does: REFUSED for a name it has no
//! server for, SERVFAIL when DNSSEC validation fails, and nothing at all when its upstream
//! never answers. The hosts that resolve point at an `smtp-sink`.

use std::net::UdpSocket;

use super::sink::sink;
use super::support::{
    Case, Daemon, Group, Need, Place, Target, delivers, failing, free_port, run_area, scratch_dir,
    skipped, tool_path,
};

pub const NEEDS: &[Need] = &[
    Need::Tool("dnsmasq"),
    Need::Tool("smtp-sink"),
    Need::Tool("ss"),
];

#[test]
fn dnsmasq_answers() {
    run_area("dnsmasq answers", NEEDS, || Place::Host, start);
}

/// dnsmasq in the foreground, on `port`, answering from its command line only: no
/// `/etc/resolv.conf`, no `/etc/hosts`, no config file, and so no upstream it was not given.
fn dnsmasq(place: &Place, port: u16, records: &[String]) -> std::process::Command {
    let mut cmd = place.command(tool_path("dnsmasq"));
    cmd.args([
        "--no-daemon",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--pid-file",
        "--log-queries",
        "--log-facility=-",
    ])
    .arg(format!("--port={port}"))
    .args(records);
    cmd
}

/// Any key digest will do: the upstream signs nothing, so the validator finds no signature
/// under the anchor, calls the answer BOGUS and returns SERVFAIL. dnsmasq wants a root anchor
/// too before it validates at all.
const TRUST_ANCHORS: [&str; 2] = [
    "--trust-anchor=.,20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
    "--trust-anchor=signed.lab.test,4242,13,2,0000000000000000000000000000000000000000000000000000000000000000",
];

pub fn start(place: &Place) -> Group {
    let mut group = Group::new(scratch_dir());
    let dir = group.dir.path().to_owned();
    let (mail, port) = sink(place, &dir, "sink", &[], "127.0.0.1");
    group.daemons.push(mail);
    // The AAAA-only case needs IPv6 loopback, which some containers lack.
    let ipv6 = UdpSocket::bind("[::1]:0").is_ok();
    let v6_port = if ipv6 {
        let (mail6, port6) = sink(place, &dir, "sink6", &[], "[::1]");
        group.daemons.push(mail6);
        Some(port6)
    } else {
        skipped("case dns-aaaa-only: no IPv6 loopback");
        None
    };

    // Serves `signed.lab.test` unsigned, behind the main server's trust anchor.
    let upstream_port = free_port();
    let upstream = dnsmasq(
        place,
        upstream_port,
        &[
            "--local=/lab.test/".into(),
            "--host-record=signed.lab.test,127.0.0.1".into(),
        ],
    );
    group.daemons.push(Daemon::start(
        place,
        &dir,
        "dnsmasq-upstream",
        upstream,
        &[],
        &[upstream_port],
    ));

    // Nothing listens there: dnsmasq forwards and waits, and never answers.
    let silent = free_port();
    let records: Vec<String> = [
        "--local=/lab.test/",
        "--host-record=mail.lab.test,127.0.0.1",
        "--host-record=implicit.lab.test,127.0.0.1",
        "--host-record=v6only.lab.test,::1",
        "--txt-record=nodata.lab.test,no address here",
        "--cname=alias.lab.test,mail.lab.test",
        "--cname=dangling.lab.test,ghost.lab.test",
        "--mx-host=goodmx.lab.test,mail.lab.test,10",
        "--mx-host=nullmx.lab.test,.,0",
        "--mx-host=ghostmx.lab.test,ghost.lab.test,10",
        "--mx-host=halfmx.lab.test,ghost.lab.test,10",
        "--mx-host=halfmx.lab.test,mail.lab.test,20",
        "--dnssec",
    ]
    .into_iter()
    .map(String::from)
    .chain(TRUST_ANCHORS.map(String::from))
    .chain([
        format!("--server=/signed.lab.test/127.0.0.1#{upstream_port}"),
        format!("--server=/silent.lab.test/127.0.0.1#{silent}"),
    ])
    .collect();
    let dns_port = place.dns_port();
    let main = dnsmasq(place, dns_port, &records);
    group.daemons.push(Daemon::start(
        place,
        &dir,
        "dnsmasq",
        main,
        &[],
        &[dns_port],
    ));
    group.nameserver = format!("127.0.0.1:{dns_port}");

    let smart = |host: &str| Target::Smart {
        host: host.into(),
        port,
    };
    let mx = |domain: &str| Target::Mx {
        domain: domain.into(),
        port,
    };
    let dns_failure = |message| failing("450 4.4.312", "resolve").message(message);
    let peer = |what: &str| format!("dnsmasq: {what}");
    group.cases = vec![
        Case::new(
            "dns-nxdomain",
            peer("the name does not exist (NXDOMAIN)"),
            smart("nxdomain.lab.test"),
            dns_failure("InfoDomainNonexistent"),
        ),
        Case::new(
            "dns-nodata",
            peer("the name has a TXT record only (NODATA)"),
            smart("nodata.lab.test"),
            dns_failure("InfoNoRecords"),
        ),
        Case::new(
            "dns-refused",
            peer("a name it serves no zone for: REFUSED"),
            smart("mail.elsewhere.test"),
            dns_failure("ErrorRetry]"),
        ),
        Case::new(
            "dns-servfail",
            peer("DNSSEC validation fails: SERVFAIL"),
            smart("signed.lab.test"),
            dns_failure("ErrorRetry]"),
        ),
        Case::new(
            "dns-timeout",
            peer("forwards to an upstream that never answers"),
            smart("mail.silent.lab.test"),
            dns_failure("ErrorRetry]"),
        ),
        Case::new(
            "dns-cname",
            peer("CNAME to mail.lab.test (smtp-sink, no STARTTLS)"),
            smart("alias.lab.test"),
            delivers("warning"),
        ),
        Case::new(
            "dns-cname-dangling",
            peer("CNAME to a name that does not exist"),
            smart("dangling.lab.test"),
            dns_failure("InfoDomainNonexistent"),
        ),
        Case::new(
            "mx-healthy",
            peer("MX 10 mail.lab.test (smtp-sink, no STARTTLS)"),
            mx("goodmx.lab.test"),
            delivers("warning"),
        ),
        Case::new(
            "mx-implicit",
            peer("no MX, an A record: implicit MX"),
            mx("implicit.lab.test"),
            delivers("warning"),
        ),
        Case::new(
            "mx-null",
            peer("null MX (0 .)"),
            mx("nullmx.lab.test"),
            dns_failure("InfoNoRecords]"),
        ),
        Case::new(
            "mx-host-nxdomain",
            peer("MX to a host that does not exist"),
            mx("ghostmx.lab.test"),
            dns_failure("ErrorRetry]"),
        ),
        Case::new(
            "mx-domain-nxdomain",
            peer("the domain does not exist"),
            mx("nxdomain.lab.test"),
            failing("550 5.4.310", "resolve")
                .message("InfoDomainNonexistent] [LastAttemptedServerName=nxdomain.lab.test]"),
        ),
        Case::new(
            "mx-domain-nodata",
            peer("neither MX nor address records"),
            mx("nodata.lab.test"),
            dns_failure("InfoNoRecords"),
        ),
        Case::new(
            "mx-servfail",
            peer("MX lookup fails DNSSEC validation: SERVFAIL"),
            mx("signed.lab.test"),
            dns_failure("ErrorRetry]"),
        ),
        Case::new(
            "mx-timeout",
            peer("MX lookup never answered"),
            mx("silent.lab.test"),
            dns_failure("ErrorRetry]"),
        ),
        // EOP fails over to the next MX, so one host that does not resolve only degrades.
        Case::new(
            "mx-first-host-missing",
            peer("MX 10 to a missing host, MX 20 mail.lab.test"),
            mx("halfmx.lab.test"),
            delivers("degraded").stages(&["resolve", "done"]),
        ),
    ];
    if let Some(port6) = v6_port {
        group.cases.push(Case::new(
            "dns-aaaa-only",
            peer("AAAA ::1 only, A is NODATA (smtp-sink on [::1])"),
            Target::Smart {
                host: "v6only.lab.test".into(),
                port: port6,
            },
            delivers("warning"),
        ));
    }
    group
}
