//! A private PKI for the lab: a root and an intermediate CA, leaves of every kind the
//! classification table names, and CRLs. Generated at start with rcgen; nothing is stored.

use std::sync::Arc;

use openssl::ssl::SslAcceptor;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};
use rustls::ServerConfig;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use time::{Duration, OffsetDateTime};

/// A CA: its certificate and what it needs to sign.
pub struct Ca {
    pub cert: CertificateDer<'static>,
    /// The certificate in PEM, for a `ca_file`.
    pub pem: String,
    params: CertificateParams,
    key: KeyPair,
}

impl Ca {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// The CA's key in PKCS#8 PEM, for tools that sign in its name (`openssl ocsp`).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

/// Who signs a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// The intermediate, which chains to the lab root.
    Intermediate,
    /// The leaf signs itself.
    SelfSigned,
    /// A CA nobody trusts.
    Stranger,
}

/// What a leaf should look like.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub common_name: String,
    pub names: Vec<String>,
    /// Validity relative to now.
    pub not_before: Duration,
    pub not_after: Duration,
    pub signer: Signer,
    /// Send the intermediate along (a server that forgets it has a broken chain).
    pub send_intermediate: bool,
    /// `false` gives a leaf for client authentication only: the wrong key usage.
    pub server_auth: bool,
    pub serial: u64,
    /// An RSA key (2048 bits) instead of a P-256 one: the ECDHE-RSA and RSA key exchange
    /// suites need one.
    pub rsa: bool,
    /// The URLs of its CRL distribution point.
    pub crl_urls: Vec<String>,
}

impl LeafSpec {
    /// A good certificate for `name`, valid from yesterday for a year.
    pub fn valid(name: &str) -> LeafSpec {
        LeafSpec {
            common_name: name.to_owned(),
            names: vec![name.to_owned()],
            not_before: Duration::days(-1),
            not_after: Duration::days(365),
            signer: Signer::Intermediate,
            send_intermediate: true,
            server_auth: true,
            serial: 0,
            rsa: false,
            crl_urls: Vec::new(),
        }
    }
}

impl LeafSpec {
    /// A certificate for `name` that expired two days ago.
    pub fn expired(name: &str) -> LeafSpec {
        LeafSpec {
            not_before: Duration::days(-400),
            not_after: Duration::days(-2),
            ..LeafSpec::valid(name)
        }
    }
}

/// A leaf certificate with its key and the chain the server sends.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivatePkcs8KeyDer<'static>,
    pub serial: u64,
    /// The chain in PEM, leaf first, for servers configured by file (Postfix).
    pub chain_pem: String,
    /// The key in PKCS#8 PEM.
    pub key_pem: String,
}

/// A 2048-bit RSA key; ring, which signs for rcgen, cannot generate one, OpenSSL can.
fn rsa_key() -> KeyPair {
    let rsa = openssl::rsa::Rsa::generate(2048).expect("RSA key generation");
    let pem = openssl::pkey::PKey::from_rsa(rsa)
        .and_then(|k| k.private_key_to_pem_pkcs8())
        .expect("PKCS#8 encoding");
    KeyPair::from_pem(std::str::from_utf8(&pem).expect("PEM is ASCII")).expect("an RSA key pair")
}

impl Leaf {
    /// An OpenSSL server presenting this leaf, TLS 1.2 only, limited to the suites of
    /// `ciphers` (OpenSSL's names), at security level 0 so that any suite may be chosen.
    pub fn openssl_acceptor(&self, ciphers: &str) -> Arc<SslAcceptor> {
        use openssl::pkey::PKey;
        use openssl::ssl::{SslMethod, SslVersion};
        use openssl::x509::X509;
        let build = || -> Result<SslAcceptor, openssl::error::ErrorStack> {
            let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
            b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
            b.set_max_proto_version(Some(SslVersion::TLS1_2))?;
            b.set_security_level(0);
            b.set_cipher_list(ciphers)?;
            let (leaf, rest) = self.chain.split_first().expect("a chain has a leaf");
            let leaf = X509::from_der(leaf)?;
            b.set_certificate(&leaf)?;
            for c in rest {
                b.add_extra_chain_cert(X509::from_der(c)?)?;
            }
            let key = PKey::private_key_from_der(self.key.secret_pkcs8_der())?;
            b.set_private_key(&key)?;
            b.check_private_key()?;
            Ok(b.build())
        };
        Arc::new(build().expect("an OpenSSL acceptor for the lab leaf"))
    }

    /// A rustls server configuration presenting this leaf and stapling `ocsp` (DER).
    pub fn server_config_with_ocsp(&self, ocsp: Vec<u8>) -> Arc<ServerConfig> {
        let config = ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert_with_ocsp(
                self.chain.clone(),
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
                ocsp,
            )
            .expect("the lab key matches its certificate");
        Arc::new(config)
    }

    /// A rustls server configuration presenting this leaf.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let config = ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                self.chain.clone(),
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .expect("the lab key matches its certificate");
        Arc::new(config)
    }
}

/// The lab PKI.
pub struct Pki {
    pub root: Ca,
    pub intermediate: Ca,
    stranger: Ca,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name
        .push(DnType::OrganizationName, "connector-probe lab");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = OffsetDateTime::now_utc() - Duration::days(30);
    p.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
    p
}

fn self_signed_ca(name: &str) -> Ca {
    let params = ca_params(name);
    let key = KeyPair::generate().expect("key generation");
    let signed = params.self_signed(&key).expect("self-signing");
    Ca {
        cert: signed.der().clone(),
        pem: signed.pem(),
        params,
        key,
    }
}

impl Pki {
    pub fn new() -> Pki {
        let root = self_signed_ca("connector-probe lab root");
        let params = ca_params("connector-probe lab intermediate");
        let key = KeyPair::generate().expect("key generation");
        let signed = params.signed_by(&key, &root.issuer()).expect("signing");
        let intermediate = Ca {
            cert: signed.der().clone(),
            pem: signed.pem(),
            params,
            key,
        };
        let stranger = self_signed_ca("untrusted stranger CA");
        Pki {
            root,
            intermediate,
            stranger,
        }
    }

    pub fn leaf(&self, spec: &LeafSpec) -> Leaf {
        let mut p = CertificateParams::new(spec.names.clone()).expect("valid names");
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, spec.common_name.clone());
        let now = OffsetDateTime::now_utc();
        p.not_before = now + spec.not_before;
        p.not_after = now + spec.not_after;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![if spec.server_auth {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        p.use_authority_key_identifier_extension = spec.signer != Signer::SelfSigned;
        p.key_identifier_method = KeyIdMethod::Sha256;
        if spec.serial != 0 {
            p.serial_number = Some(SerialNumber::from(spec.serial));
        }
        if !spec.crl_urls.is_empty() {
            p.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: spec.crl_urls.clone(),
            }];
        }
        let key = if spec.rsa {
            rsa_key()
        } else {
            KeyPair::generate().expect("key generation")
        };
        let cert = match spec.signer {
            Signer::Intermediate => p.signed_by(&key, &self.intermediate.issuer()),
            Signer::Stranger => p.signed_by(&key, &self.stranger.issuer()),
            Signer::SelfSigned => p.self_signed(&key),
        }
        .expect("signing");
        let mut chain = vec![cert.der().clone()];
        let mut chain_pem = cert.pem();
        if spec.send_intermediate && spec.signer == Signer::Intermediate {
            chain.push(self.intermediate.cert.clone());
            chain_pem.push_str(&self.intermediate.pem);
        }
        Leaf {
            chain,
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            serial: spec.serial,
            chain_pem,
            key_pem: key.serialize_pem(),
        }
    }

    /// A CRL of the intermediate that revokes `serials`.
    pub fn crl(&self, serials: &[u64]) -> CertificateRevocationListDer<'static> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update: now + Duration::days(7),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - Duration::hours(1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.intermediate.issuer())
            .expect("CRL signing")
            .der()
            .clone()
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}
