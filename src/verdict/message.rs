//! The `[Message=…]` builder: a row's [`Msg`] and what the probe saw, written as EOP writes it.

use super::table::Msg;
use crate::certificate::{CertificateInfo, Problem};

/// What a Message may quote.
pub struct Seen<'a> {
    /// The server's reply as received, lines joined by a space.
    pub reply: Option<&'a str>,
    /// For people, when the table has no words of EOP's.
    pub detail: &'a str,
    pub certificate: Option<&'a CertificateInfo>,
    pub problem: Option<Problem>,
    /// `tls_domain` when set, else the target's host.
    pub expected_subject: &'a str,
}

/// The Message for a row.
pub fn build(msg: Msg, seen: &Seen<'_>) -> String {
    match msg {
        Msg::Text(t) => t.to_owned(),
        Msg::Reply => seen.reply.unwrap_or(seen.detail).to_owned(),
        Msg::Certificate => certificate(
            seen.problem
                .map_or("CertificateInvalid", Problem::eop_status),
            seen.expected_subject,
            seen.certificate,
        ),
        Msg::None => seen.detail.to_owned(),
    }
}

/// `<Status> Expected Subject: <x>. Presented Subject: <subject DN>. Thumbprint: <SHA-1>.`,
/// exactly as EOP writes it.
pub fn certificate(status: &str, expected: &str, cert: Option<&CertificateInfo>) -> String {
    let (subject, thumbprint) = cert.map_or(("", ""), |c| {
        (c.windows_subject.as_str(), c.sha1_thumbprint.as_str())
    });
    format!(
        "{status} Expected Subject: {expected}. Presented Subject: {subject}. Thumbprint: {thumbprint}."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_message_is_eops_to_the_character() {
        let cert = CertificateInfo {
            windows_subject: "CN=ExchangeServer01".into(),
            sha1_thumbprint: "D0AC2FC63B9C5798828B45D849BE8D33D2F1E0AA".into(),
            ..CertificateInfo::default()
        };
        assert_eq!(
            build(
                Msg::Certificate,
                &Seen {
                    reply: None,
                    detail: "",
                    certificate: Some(&cert),
                    problem: Some(Problem::NameMismatch),
                    expected_subject: "*.contoso.com",
                }
            ),
            "SubjectMismatch Expected Subject: *.contoso.com. Presented Subject: CN=ExchangeServer01. Thumbprint: D0AC2FC63B9C5798828B45D849BE8D33D2F1E0AA."
        );
    }

    #[test]
    fn a_reply_is_quoted_as_received() {
        let seen = Seen {
            reply: Some("421 4.3.2 Service not available"),
            detail: "the server greeted with an error",
            certificate: None,
            problem: None,
            expected_subject: "",
        };
        assert_eq!(build(Msg::Reply, &seen), "421 4.3.2 Service not available");
        assert_eq!(
            build(Msg::Text("Socket error code 10061"), &seen),
            "Socket error code 10061"
        );
    }
}
