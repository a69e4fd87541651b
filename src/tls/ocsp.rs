//! A stapled OCSP response: kept from the handshake (either engine), checked with the chain.
//!
//! rustls hands the staple only to the certificate verifier, not to the connection's owner,
//! so the handshake verifier files it under the leaf it came with, and the chain judgement
//! reads it back by the same leaf. A leaf's latest staple stands for it: two servers
//! presenting one certificate staple the same responder's word about it.

use std::collections::HashMap;
use std::sync::Mutex;

use openssl::hash::MessageDigest;
use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspFlag, OcspResponse, OcspResponseStatus};
use openssl::stack::Stack;
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyFlags;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

/// More leaves than this and the map starts again: a run probes far fewer certificates, and
/// a staple is only read right after its handshake.
const MAX_STAPLES: usize = 4096;
/// Clock skew allowed on a response's thisUpdate and nextUpdate.
const SKEW_SECONDS: u32 = 300;

/// Staples by the SHA-256 of their leaf.
#[derive(Default)]
pub struct Staples {
    map: Mutex<HashMap<[u8; 32], Vec<u8>>>,
}

impl Staples {
    pub fn put(&self, leaf: &[u8], staple: &[u8]) {
        let mut map = self.map.lock().expect("staples lock");
        if map.len() >= MAX_STAPLES {
            map.clear();
        }
        map.insert(Sha256::digest(leaf).into(), staple.to_vec());
    }

    pub fn get(&self, leaf: &[u8]) -> Option<Vec<u8>> {
        let key: [u8; 32] = Sha256::digest(leaf).into();
        self.map.lock().expect("staples lock").get(&key).cloned()
    }
}

/// What a staple says of the leaf: `Ok(true)` revoked, `Ok(false)` good; an error is why it
/// says nothing usable (unsigned by the issuer, stale, about another certificate…). Called
/// only for a chain already trusted, so its issuer is the one to trust for the response.
pub fn revoked(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    staple: &[u8],
) -> Result<bool, String> {
    let why = |e: openssl::error::ErrorStack| e.to_string();
    let response = OcspResponse::from_der(staple).map_err(|e| format!("not OCSP: {e}"))?;
    if response.status() != OcspResponseStatus::SUCCESSFUL {
        return Err(format!(
            "the responder answered with status {}",
            response.status().as_raw()
        ));
    }
    let basic = response.basic().map_err(why)?;
    let leaf = X509::from_der(leaf).map_err(why)?;
    let issuer_name = leaf.issuer_name().to_der().map_err(why)?;
    let issuer = intermediates
        .iter()
        .filter_map(|c| X509::from_der(c).ok())
        .find(|c| c.subject_name().to_der().ok().as_ref() == Some(&issuer_name))
        .ok_or("the certificate's issuer is not in the chain the server sent")?;
    // The issuer (already trusted through the chain) signs the response, or delegates to a
    // responder certificate it issued.
    let mut store = X509StoreBuilder::new().map_err(why)?;
    store.add_cert(issuer.clone()).map_err(why)?;
    store
        .set_flags(X509VerifyFlags::PARTIAL_CHAIN)
        .map_err(why)?;
    let store = store.build();
    let mut certs = Stack::new().map_err(why)?;
    certs.push(issuer.clone()).map_err(why)?;
    basic
        .verify(&certs, &store, OcspFlag::TRUST_OTHER)
        .map_err(|e| format!("its signature does not verify: {e}"))?;
    let id = OcspCertId::from_cert(MessageDigest::sha1(), &leaf, &issuer).map_err(why)?;
    let status = basic
        .find_status(&id)
        .ok_or("it does not speak of this certificate")?;
    status
        .check_validity(SKEW_SECONDS, None)
        .map_err(|e| format!("it is out of date: {e}"))?;
    match status.status {
        OcspCertStatus::REVOKED => Ok(true),
        OcspCertStatus::GOOD => Ok(false),
        _ => Err("the responder does not know the certificate".into()),
    }
}
