//! The alert events of `interface.md`: which fire when (a pure function of the previous
//! state, the new verdict and the clock), and how they are written (tracing, JSON on stdout).
//!
//! Every event but `probe_result` fires once per transition: the raised flags live in the
//! state, which is persisted, so a restart does not repeat them.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::state::ConnectorState;
use crate::verdict::{ConnectorVerdict, Status};

/// The clock of EOP's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// EOP's "Messages have been delayed" alert fires after this much failing (1 h).
    pub queue_alert_after: Duration,
    /// EOP's `MessageExpiration`: queued mail is returned to the sender after this.
    pub message_expiration: Duration,
}

impl Policy {
    /// `ndr_imminent` fires this long before the first queued message expires: an hour, or a
    /// quarter of the expiration if that is shorter.
    pub fn imminent_before(&self) -> Duration {
        Duration::from_secs(3600).min(self.message_expiration / 4)
    }
}

/// What every alert about a failing connector carries: the code, EOP's line, and the fix.
#[derive(Debug, Clone, PartialEq)]
pub struct Failing {
    pub code: String,
    pub eop_status: Option<String>,
    pub fix: Option<&'static str>,
}

/// An alert event, with the fields `interface.md` names.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    StateChange {
        from: String,
        to: Status,
        code: Option<String>,
        eop_status: Option<String>,
        fix: Option<&'static str>,
        failing_since: Option<OffsetDateTime>,
    },
    QueueAlert {
        failing: Failing,
        failing_since: OffsetDateTime,
    },
    NdrImminent {
        failing: Failing,
        ndr: Option<&'static str>,
        ndr_line: Option<String>,
        expires_at: OffsetDateTime,
    },
    NdrExpected {
        failing: Failing,
        ndr: Option<&'static str>,
        ndr_line: Option<String>,
        expires_at: OffsetDateTime,
    },
    CertificateExpiring {
        target: String,
        host: String,
        not_after: String,
        days_left: i64,
    },
}

/// Applies a verdict to a connector's state and returns the events it raises.
pub fn advance(
    state: &mut ConnectorState,
    v: &ConnectorVerdict,
    expiry_warning: Duration,
    now: OffsetDateTime,
    policy: &Policy,
) -> Vec<Event> {
    let mut events = Vec::new();
    let failing = v.status == Status::Failing;
    if failing {
        if state.failing_since.is_none() {
            state.failing_since = Some(now);
            state.raised = Default::default();
        }
    } else {
        state.failing_since = None;
        state.raised = Default::default();
        state.last_success = Some(now);
    }

    let code = v.code.map(str::to_owned);
    if state.status != Some(v.status) || state.code != code {
        events.push(Event::StateChange {
            from: state.status.map_or("unknown", Status::as_str).to_owned(),
            to: v.status,
            code: code.clone(),
            eop_status: v.eop_status.clone(),
            fix: v.fix,
            failing_since: state.failing_since,
        });
    }

    if let (Some(since), Some(code)) = (state.failing_since.filter(|_| failing), &code) {
        let about = Failing {
            code: code.clone(),
            eop_status: v.eop_status.clone(),
            fix: v.fix,
        };
        // A code EOP does not queue (5.4.310) bounces at once: no queue, no countdown, and
        // senders are getting the NDR now.
        let queued = v.is_queueing();
        let failing_for = now - since;
        if queued && failing_for >= policy.queue_alert_after && !state.raised.queue_alert {
            state.raised.queue_alert = true;
            events.push(Event::QueueAlert {
                failing: about.clone(),
                failing_since: since,
            });
        }
        let expires_at = if queued {
            crate::clock::later(since, policy.message_expiration)
        } else {
            since
        };
        let imminent_at = crate::clock::earlier(expires_at, policy.imminent_before());
        if queued && now >= imminent_at && !state.raised.ndr_imminent {
            state.raised.ndr_imminent = true;
            events.push(Event::NdrImminent {
                failing: about.clone(),
                ndr: v.ndr,
                ndr_line: v.ndr_line.clone(),
                expires_at,
            });
        }
        if now >= expires_at && !state.raised.ndr_expected {
            state.raised.ndr_expected = true;
            events.push(Event::NdrExpected {
                failing: about,
                ndr: v.ndr,
                ndr_line: v.ndr_line.clone(),
                expires_at,
            });
        }
    }

    if v.tls_mode.validates_certificate() {
        for t in &v.targets {
            let Some(cert) = &t.certificate else { continue };
            if cert.expiring_within(expiry_warning, now).is_none() {
                continue;
            }
            let key = format!("{}|{}", t.endpoint(), cert.not_after);
            if state.certificates_warned.insert(key) {
                events.push(Event::CertificateExpiring {
                    target: t.endpoint(),
                    host: t.host.clone(),
                    not_after: cert.not_after.clone(),
                    days_left: cert.days_left,
                });
            }
        }
    }

    state.status = Some(v.status);
    state.code = code;
    state.eop_status = v.eop_status.clone();
    state.last_probe = Some(now);
    events
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// `probe_result` lists this many targets; the rest are counted. A connector can have
/// hundreds (an MX domain whose hosts have many addresses), and a line past 64 KiB would be
/// truncated or dropped by log shippers; 20 long host names stay well under that.
const PROBE_RESULT_TARGETS: usize = 20;

/// Writes `probe_result` for every probe.
pub fn emit_probe_result(v: &ConnectorVerdict) {
    let mut targets: Vec<String> = v
        .targets
        .iter()
        .take(PROBE_RESULT_TARGETS)
        .map(|t| {
            format!(
                "{} {} {} {}",
                t.host,
                t.endpoint(),
                t.stage,
                t.code.unwrap_or("ok")
            )
        })
        .collect();
    let more = v.targets.len().saturating_sub(PROBE_RESULT_TARGETS);
    if more > 0 {
        targets.push(format!("and {more} more"));
    }
    tracing::info!(
        event = "probe_result",
        connector = %v.connector,
        status = v.status.as_str(),
        code = v.code,
        eop_status = v.eop_status.as_deref(),
        duration_ms = v.duration_ms,
        targets = %targets.join("; "),
        "{} {}{}",
        v.connector,
        v.status.as_str(),
        v.code.map(|c| format!(" {c}")).unwrap_or_default()
    );
}

/// Writes one alert event.
pub fn emit(connector: &str, e: &Event) {
    match e {
        Event::StateChange {
            from,
            to,
            code,
            eop_status,
            fix,
            failing_since,
        } => {
            let since = failing_since.map(rfc3339);
            let text = format!("{connector}: {from} -> {}", to.as_str());
            if matches!(to, Status::Failing | Status::Degraded) {
                tracing::warn!(event = "state_change", connector, from = %from, to = to.as_str(), code = code.as_deref(), eop_status = eop_status.as_deref(), fix = *fix, failing_since = since.as_deref(), "{text}");
            } else {
                tracing::info!(event = "state_change", connector, from = %from, to = to.as_str(), code = code.as_deref(), eop_status = eop_status.as_deref(), fix = *fix, failing_since = since.as_deref(), "{text}");
            }
        }
        Event::QueueAlert {
            failing,
            failing_since,
        } => tracing::warn!(
            event = "queue_alert",
            connector,
            code = %failing.code,
            eop_status = failing.eop_status.as_deref(),
            fix = failing.fix,
            failing_since = %rfc3339(*failing_since),
            "{connector} has failed since {}: Microsoft 365 is queueing its mail (\"Messages have been delayed\")",
            rfc3339(*failing_since)
        ),
        Event::NdrImminent {
            failing,
            ndr,
            ndr_line,
            expires_at,
        } => tracing::error!(
            event = "ndr_imminent",
            connector,
            code = %failing.code,
            ndr = *ndr,
            ndr_line = ndr_line.as_deref(),
            eop_status = failing.eop_status.as_deref(),
            fix = failing.fix,
            expires_at = %rfc3339(*expires_at),
            "{connector}: queued mail starts expiring at {} with {}",
            rfc3339(*expires_at),
            ndr_line.as_deref().or(*ndr).unwrap_or("an NDR")
        ),
        Event::NdrExpected {
            failing,
            ndr,
            ndr_line,
            expires_at,
        } => tracing::error!(
            event = "ndr_expected",
            connector,
            code = %failing.code,
            ndr = *ndr,
            ndr_line = ndr_line.as_deref(),
            eop_status = failing.eop_status.as_deref(),
            fix = failing.fix,
            expires_at = %rfc3339(*expires_at),
            "{connector}: senders are getting {}",
            ndr_line.as_deref().or(*ndr).unwrap_or("an NDR")
        ),
        Event::CertificateExpiring {
            target,
            host,
            not_after,
            days_left,
        } => tracing::warn!(
            event = "certificate_expiring",
            connector,
            target = %target,
            host = %host,
            not_after = %not_after,
            days_left,
            "{connector}: the certificate of {host} ({target}) expires on {not_after}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Code, Condition};

    fn verdict(status: Status, code: Option<Code>) -> ConnectorVerdict {
        ConnectorVerdict::sample("c", status, code.map(|c| (c, Condition::Other)))
    }

    fn names(events: &[Event]) -> Vec<&'static str> {
        events
            .iter()
            .map(|e| match e {
                Event::StateChange { .. } => "state_change",
                Event::QueueAlert { .. } => "queue_alert",
                Event::NdrImminent { .. } => "ndr_imminent",
                Event::NdrExpected { .. } => "ndr_expected",
                Event::CertificateExpiring { .. } => "certificate_expiring",
            })
            .collect()
    }

    #[test]
    fn a_failing_episode_raises_each_alert_once() {
        let policy = Policy {
            queue_alert_after: Duration::from_secs(3600),
            message_expiration: Duration::from_secs(24 * 3600),
        };
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let at = |mins: i64| t0 + time::Duration::minutes(mins);
        let mut s = ConnectorState::default();
        let ok = verdict(Status::Ok, None);
        let refused = verdict(Status::Failing, Some(Code::ConnectionRefused));
        let timeout = verdict(Status::Failing, Some(Code::ConnectionTimedOut));
        let w = Duration::from_secs(14 * 86400);

        assert_eq!(
            names(&advance(&mut s, &ok, w, at(0), &policy)),
            ["state_change"]
        );
        assert!(
            advance(&mut s, &ok, w, at(5), &policy).is_empty(),
            "no change, no event"
        );
        assert_eq!(
            names(&advance(&mut s, &refused, w, at(10), &policy)),
            ["state_change"]
        );
        assert_eq!(s.failing_since, Some(at(10)));
        assert!(advance(&mut s, &refused, w, at(60), &policy).is_empty());
        assert_eq!(
            names(&advance(&mut s, &refused, w, at(71), &policy)),
            ["queue_alert"]
        );
        assert!(
            advance(&mut s, &refused, w, at(80), &policy).is_empty(),
            "queue_alert once"
        );
        // A new code in the same episode: a state change, but failing_since stays.
        assert_eq!(
            names(&advance(&mut s, &timeout, w, at(90), &policy)),
            ["state_change"]
        );
        assert_eq!(s.failing_since, Some(at(10)));
        let events = advance(&mut s, &timeout, w, at(10 + 23 * 60), &policy);
        assert_eq!(names(&events), ["ndr_imminent"]);
        let Event::NdrImminent {
            ndr, expires_at, ..
        } = &events[0]
        else {
            unreachable!()
        };
        assert_eq!(*ndr, Some("550 5.4.315"));
        assert_eq!(*expires_at, at(10 + 24 * 60));
        assert_eq!(
            names(&advance(&mut s, &timeout, w, at(10 + 24 * 60), &policy)),
            ["ndr_expected"]
        );
        assert!(advance(&mut s, &timeout, w, at(10 + 25 * 60), &policy).is_empty());
        // Recovery clears the episode; a new one raises everything again.
        assert_eq!(
            names(&advance(&mut s, &ok, w, at(2000), &policy)),
            ["state_change"]
        );
        assert_eq!(s.failing_since, None);
        assert_eq!(s.last_success, Some(at(2000)));
        assert_eq!(
            names(&advance(&mut s, &refused, w, at(2001), &policy)),
            ["state_change"]
        );
        assert_eq!(
            names(&advance(&mut s, &refused, w, at(2062), &policy)),
            ["queue_alert"]
        );
    }

    #[test]
    fn a_domain_that_does_not_exist_is_bounced_at_once_not_queued() {
        let policy = Policy {
            queue_alert_after: Duration::from_secs(3600),
            message_expiration: Duration::from_secs(24 * 3600),
        };
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let mut s = ConnectorState::default();
        let mut gone = verdict(Status::Failing, Some(Code::DomainNonexistent));
        let line = "550 5.4.310 DNS domain x.example does not exist [Message=InfoDomainNonexistent] [LastAttemptedServerName=x.example]";
        gone.eop_status = Some(line.into());
        gone.ndr_line = Some(line.into());
        let events = advance(&mut s, &gone, Duration::ZERO, t0, &policy);
        assert_eq!(names(&events), ["state_change", "ndr_expected"]);
        let Event::NdrExpected {
            ndr,
            ndr_line,
            failing,
            ..
        } = &events[1]
        else {
            unreachable!()
        };
        assert_eq!(*ndr, Some("550 5.4.310"));
        assert_eq!(ndr_line.as_deref(), Some(line));
        assert_eq!(failing.eop_status.as_deref(), Some(line));
        assert!(failing.fix.is_some());
        let later = t0 + time::Duration::hours(2);
        assert!(
            advance(&mut s, &gone, Duration::ZERO, later, &policy).is_empty(),
            "no queue alert, no countdown: nothing is queued"
        );
    }

    #[test]
    fn first_probe_after_a_long_outage_raises_the_due_alerts_together() {
        let policy = Policy {
            queue_alert_after: Duration::from_secs(3600),
            message_expiration: Duration::from_secs(12 * 3600),
        };
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let mut s = ConnectorState {
            status: Some(Status::Failing),
            code: Some("450 4.4.316".into()),
            failing_since: Some(t0),
            ..Default::default()
        };
        let refused = verdict(Status::Failing, Some(Code::ConnectionRefused));
        let events = advance(
            &mut s,
            &refused,
            Duration::ZERO,
            t0 + time::Duration::hours(13),
            &policy,
        );
        assert_eq!(
            names(&events),
            ["queue_alert", "ndr_imminent", "ndr_expected"]
        );
    }
}
