//! Postfix's `smtp-sink` for SMTP faults, one sink per case. From `smtp-sink(1)`: `-Q cmd`
//! sends `421` and hangs up after `cmd`; `-q cmd` hangs up without a reply; `-r cmd` rejects
//! it with `450`, `-f cmd` with `500`; `-W cmd:delay` waits before answering. `CONNECT` is
//! the greeting. A sink never offers STARTTLS.

use std::path::Path;

use super::support::{
    Case, Daemon, Expect, Group, Need, Place, Target, delivers, failing, free_port, is_root,
    run_area, scratch_dir, tool_path,
};

pub const NEEDS: &[Need] = &[Need::Tool("smtp-sink"), Need::Tool("ss")];

#[test]
fn smtp_sink_faults() {
    run_area("smtp-sink faults", NEEDS, || Place::Host, start);
}

/// Starts `smtp-sink OPTIONS ADDRESS:PORT` in `place`, `address` being `127.0.0.1` or
/// `[::1]`, and returns it with its port.
pub fn sink(
    place: &Place,
    dir: &Path,
    name: &str,
    options: &[&str],
    address: &str,
) -> (Daemon, u16) {
    let port = free_port();
    let mut cmd = place.command(tool_path("smtp-sink"));
    // As root, smtp-sink insists on a user to switch to.
    if is_root() {
        cmd.args(["-u", "nobody"]);
    }
    cmd.args(["-h", "mail.lab.test"])
        .args(options)
        .arg(format!("{address}:{port}"))
        .arg("16");
    (Daemon::start(place, dir, name, cmd, &[port], &[]), port)
}

/// Each case: its sink's options, what that does, the TLS mode, and what the spec says.
fn table() -> Vec<(
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
    Expect,
)> {
    let timed_out = |stage| failing("450 4.4.318", stage).message("SuspiciousRemoteServerError");
    vec![
        (
            "sink-greeting-421",
            &["-Q", "CONNECT"],
            "421 instead of the greeting, then hangs up",
            "opportunistic",
            failing("450 4.4.317", "banner"),
        ),
        (
            "sink-greeting-450",
            &["-r", "CONNECT"],
            "greets with 450",
            "opportunistic",
            failing("450 4.4.317", "banner"),
        ),
        (
            "sink-greeting-500",
            &["-f", "CONNECT"],
            "greets with 500",
            "opportunistic",
            failing("450 4.4.317", "banner"),
        ),
        (
            "sink-greeting-hangup",
            &["-q", "CONNECT"],
            "hangs up before the greeting",
            "opportunistic",
            failing("450 4.4.318", "banner"),
        ),
        (
            "sink-greeting-slow",
            &["-W", "CONNECT:30"],
            "greets after 30 s",
            "opportunistic",
            timed_out("banner"),
        ),
        (
            "sink-ehlo-421",
            &["-Q", "EHLO"],
            "answers EHLO 421 and hangs up",
            "opportunistic",
            failing("450 4.4.317", "ehlo"),
        ),
        (
            "sink-ehlo-450",
            &["-r", "EHLO"],
            "answers EHLO 450",
            "opportunistic",
            failing("450 4.4.317", "ehlo"),
        ),
        (
            "sink-ehlo-hangup",
            &["-q", "EHLO"],
            "hangs up after EHLO",
            "opportunistic",
            failing("450 4.4.318", "ehlo"),
        ),
        (
            "sink-ehlo-slow",
            &["-W", "EHLO:30"],
            "answers EHLO after 30 s",
            "opportunistic",
            timed_out("ehlo"),
        ),
        (
            "sink-ehlo-500-helo-ok",
            &["-f", "EHLO"],
            "answers EHLO 500, accepts HELO",
            "opportunistic",
            delivers("warning"),
        ),
        (
            "sink-ehlo-500-helo-500",
            &["-f", "EHLO,HELO"],
            "answers EHLO and HELO 500",
            "opportunistic",
            failing("450 4.4.317", "ehlo"),
        ),
        (
            "sink-ehlo-500-helo-hangup",
            &["-f", "EHLO", "-q", "HELO"],
            "answers EHLO 500, hangs up after HELO",
            "opportunistic",
            failing("450 4.4.318", "ehlo"),
        ),
        (
            "sink-no-esmtp",
            &["-e"],
            "no ESMTP: EHLO unknown, HELO accepted",
            "opportunistic",
            delivers("warning"),
        ),
        (
            "sink-pix",
            &["-P"],
            "greeting masked as by a Cisco PIX, no ESMTP",
            "opportunistic",
            delivers("warning"),
        ),
        (
            "sink-plaintext-opportunistic",
            &[],
            "no STARTTLS",
            "opportunistic",
            delivers("warning"),
        ),
        (
            "sink-plaintext-encryption-only",
            &[],
            "no STARTTLS",
            "encryption-only",
            failing("450 4.4.317", "starttls"),
        ),
        (
            "sink-plaintext-cv",
            &[],
            "no STARTTLS",
            "certificate-validation",
            failing("450 4.4.317", "starttls"),
        ),
        (
            "sink-quit-hangup",
            &["-q", "QUIT"],
            "hangs up at QUIT",
            "opportunistic",
            delivers("warning"),
        ),
        (
            "sink-quit-slow",
            &["-W", "QUIT:30"],
            "answers QUIT after 30 s",
            "opportunistic",
            delivers("warning"),
        ),
    ]
}

/// One sink per case, in `place`.
pub fn start(place: &Place) -> Group {
    let mut group = Group::new(scratch_dir());
    for (name, options, what, mode, expect) in table() {
        let (daemon, port) = sink(place, group.dir.path(), name, options, "127.0.0.1");
        group.daemons.push(daemon);
        let peer = match options {
            [] => format!("smtp-sink: {what}"),
            _ => format!("smtp-sink {}: {what}", options.join(" ")),
        };
        let target = Target::Smart {
            host: "127.0.0.1".into(),
            port,
        };
        group
            .cases
            .push(Case::new(name, peer, target, expect).tls(mode));
    }
    group
}
