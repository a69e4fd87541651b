//! Helpers shared by the integration tests.

use std::time::Duration;

use connector_probe::config::{
    CertificateFailureCode, Connector, Host, IpFamily, Route, Settings, SmartHost, Timeouts,
    TlsMode,
};

/// Settings for a connector to a loopback server, with the given timeouts.
pub fn settings(mode: TlsMode, timeouts: Timeouts) -> Settings {
    Settings {
        helo_name: "probe.test".into(),
        port: 25,
        interval: Duration::from_secs(60),
        tls: mode,
        expiry_warning: Duration::from_secs(14 * 86_400),
        ip_family: IpFamily::Ipv4,
        certificate_failure_code: CertificateFailureCode::CertificateValidationFailed,
        timeouts,
        bounds: connector_probe::config::DEFAULT_BOUNDS,
        source_address: None,
    }
}

/// A connector with one smart host given as an address.
pub fn connector_to(addr: std::net::SocketAddr, mode: TlsMode, timeouts: Timeouts) -> Connector {
    Connector {
        name: "under-test".into(),
        route: Route::SmartHosts(vec![SmartHost {
            host: Host::Ip(addr.ip()),
            port: Some(addr.port()),
        }]),
        tls_domain: None,
        settings: settings(mode, timeouts).into(),
    }
}

/// The same timeout for every stage.
pub fn uniform(d: Duration) -> Timeouts {
    Timeouts {
        dns: d,
        connect: d,
        banner: d,
        command: d,
        tls: d,
    }
}

/// Path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_connector-probe")
}

/// `connector-probe health` against a daemon whose metrics listen on `port`: its exit code.
pub fn health(port: u16) -> i32 {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("h.toml");
    std::fs::write(
        &cfg,
        format!("[daemon]\nmetrics_listen = \"0.0.0.0:{port}\"\n"),
    )
    .unwrap();
    std::process::Command::new(binary())
        .args(["health", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap()
        .status
        .code()
        .unwrap_or(-1)
}
