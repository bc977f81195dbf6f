//! WebAuthn (passkeys) as a relying party sees it: the CBOR the authenticator sends, its
//! authenticator data, the credential's COSE public key, and the checks a registration must pass
//! (W3C Web Authentication, §7.1). Signatures are verified by the caller with the key and the
//! signed bytes this module names; everything else is decided here.

use sha2::{Digest, Sha256};

/// Why a WebAuthn response is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebauthnError(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, WebauthnError> {
    Err(WebauthnError(message.into()))
}

/// The longest credential id accepted (WebAuthn's limit).
pub const MAX_CREDENTIAL_ID: usize = 1023;

/// A decoded CBOR value (the subset WebAuthn uses: no floats; tags are refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cbor {
    Int(i128),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Cbor>),
    Map(Vec<(Cbor, Cbor)>),
    Bool(bool),
    Null,
}

impl Cbor {
    /// The value under `key` in a map.
    pub fn get(&self, key: &Cbor) -> Option<&Cbor> {
        match self {
            Cbor::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn text_key(&self, key: &str) -> Option<&Cbor> {
        self.get(&Cbor::Text(key.into()))
    }

    fn int_key(&self, key: i128) -> Option<&Cbor> {
        self.get(&Cbor::Int(key))
    }
}

/// Decodes one CBOR item from the start of `input`; returns it and the bytes it took. Nesting is
/// limited to 16 levels, every length is checked against the input and nothing is reserved ahead
/// of the items actually read, so memory grows with the input read, never with what a length
/// claims. A map with a key twice is refused (a later parser must not read another value).
pub fn decode_cbor(input: &[u8]) -> Result<(Cbor, usize), WebauthnError> {
    let mut reader = Reader { input, at: 0 };
    let value = reader.item(0)?;
    Ok((value, reader.at))
}

struct Reader<'a> {
    input: &'a [u8],
    at: usize,
}

/// The most entries a CBOR array or map may have.
const MAX_CBOR_ENTRIES: usize = 64;

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WebauthnError> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.input.len());
        let Some(end) = end else { return fail("CBOR data ends early") };
        let slice = &self.input[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn argument(&mut self, info: u8) -> Result<u64, WebauthnError> {
        Ok(match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes(self.take(2)?.try_into().map_err(|_| WebauthnError("CBOR".into()))?)),
            26 => u64::from(u32::from_be_bytes(self.take(4)?.try_into().map_err(|_| WebauthnError("CBOR".into()))?)),
            27 => u64::from_be_bytes(self.take(8)?.try_into().map_err(|_| WebauthnError("CBOR".into()))?),
            _ => return fail("indefinite or reserved CBOR lengths are not accepted"),
        })
    }

    fn length(&mut self, info: u8) -> Result<usize, WebauthnError> {
        let n = self.argument(info)?;
        // Every element takes at least one byte: a count beyond what is left is a lie.
        match usize::try_from(n) {
            Ok(n) if n <= self.input.len() - self.at => Ok(n),
            _ => fail("a CBOR length goes beyond the data"),
        }
    }

    /// An array's or a map's count. WebAuthn's are small (an attestation object has three
    /// keys, a COSE key five, a certificate chain a few certificates); a cap keeps the map's
    /// duplicate-key check, which compares each key with those before it, small too.
    fn entries(&mut self, info: u8) -> Result<usize, WebauthnError> {
        let n = self.length(info)?;
        if n > MAX_CBOR_ENTRIES {
            return fail("a CBOR array or map has too many entries");
        }
        Ok(n)
    }

    fn item(&mut self, depth: usize) -> Result<Cbor, WebauthnError> {
        if depth > 16 {
            return fail("CBOR nested too deeply");
        }
        let head = self.take(1)?[0];
        let (major, info) = (head >> 5, head & 0x1f);
        Ok(match major {
            0 => Cbor::Int(i128::from(self.argument(info)?)),
            1 => Cbor::Int(-1 - i128::from(self.argument(info)?)),
            2 => {
                let n = self.length(info)?;
                Cbor::Bytes(self.take(n)?.to_vec())
            }
            3 => {
                let n = self.length(info)?;
                let text =
                    std::str::from_utf8(self.take(n)?).map_err(|_| WebauthnError("CBOR text is not UTF-8".into()))?;
                Cbor::Text(text.to_owned())
            }
            4 => {
                let n = self.entries(info)?;
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Cbor::Array(items)
            }
            5 => {
                let n = self.entries(info)?;
                let mut entries: Vec<(Cbor, Cbor)> = Vec::new();
                for _ in 0..n {
                    let key = self.item(depth + 1)?;
                    let value = self.item(depth + 1)?;
                    if entries.iter().any(|(seen, _)| *seen == key) {
                        return fail("a CBOR map has a key twice");
                    }
                    entries.push((key, value));
                }
                Cbor::Map(entries)
            }
            7 => match info {
                20 => Cbor::Bool(false),
                21 => Cbor::Bool(true),
                22 => Cbor::Null,
                _ => return fail("CBOR floats and simple values are not accepted"),
            },
            _ => return fail("CBOR tags are not accepted"),
        })
    }
}

/// A credential public key (COSE_Key) of an algorithm Keyward verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// ES256: ECDSA on P-256 with SHA-256 (COSE -7); the uncompressed point `04 || x || y`.
    Es256(Vec<u8>),
    /// EdDSA with Ed25519 (COSE -8); the 32-byte key.
    Ed25519(Vec<u8>),
    /// RS256: RSASSA-PKCS1-v1_5 with SHA-256 (COSE -257); modulus and exponent.
    Rs256 { n: Vec<u8>, e: Vec<u8> },
}

/// COSE algorithm ids Keyward offers in `pubKeyCredParams`, in order of preference.
pub const ALGORITHMS: [i64; 3] = [-7, -8, -257];

impl PublicKey {
    /// Reads a COSE_Key.
    pub fn from_cose(key: &Cbor) -> Result<PublicKey, WebauthnError> {
        let bytes = |label: i128| match key.int_key(label) {
            Some(Cbor::Bytes(it)) => Ok(it.clone()),
            _ => fail(format!("the COSE key lacks parameter {label}")),
        };
        let int = |label: i128| match key.int_key(label) {
            Some(Cbor::Int(it)) => Some(*it),
            _ => None,
        };
        match (int(1), int(3), int(-1)) {
            // kty EC2, alg ES256, crv P-256.
            (Some(2), Some(-7), Some(1)) => {
                let (x, y) = (bytes(-2)?, bytes(-3)?);
                if x.len() != 32 || y.len() != 32 {
                    return fail("an ES256 key's coordinates must be 32 bytes each");
                }
                Ok(PublicKey::Es256([&[4_u8][..], &x, &y].concat()))
            }
            // kty OKP, alg EdDSA, crv Ed25519.
            (Some(1), Some(-8), Some(6)) => {
                let x = bytes(-2)?;
                if x.len() != 32 {
                    return fail("an Ed25519 key must be 32 bytes");
                }
                Ok(PublicKey::Ed25519(x))
            }
            // kty RSA, alg RS256.
            (Some(3), Some(-257), _) => {
                let (n, e) = (bytes(-1)?, bytes(-2)?);
                if !(256..=512).contains(&n.len()) {
                    return fail("an RS256 key must have 2048 to 4096 bits");
                }
                // A small odd public exponent of at least 3, as RSA keys have.
                if e.is_empty() || e.len() > 4 || e.last().is_none_or(|it| it % 2 == 0) || e == [1] {
                    return fail("an RS256 key's exponent is not a usable one");
                }
                Ok(PublicKey::Rs256 { n, e })
            }
            _ => fail("the credential's key type or algorithm is not one Keyward accepts (ES256, EdDSA, RS256)"),
        }
    }

    /// The COSE algorithm id.
    pub fn algorithm(&self) -> i64 {
        match self {
            PublicKey::Es256(_) => -7,
            PublicKey::Ed25519(_) => -8,
            PublicKey::Rs256 { .. } => -257,
        }
    }
}

/// Authenticator data flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags(pub u8);

impl Flags {
    pub fn user_present(self) -> bool {
        self.0 & 0x01 != 0
    }
    pub fn user_verified(self) -> bool {
        self.0 & 0x04 != 0
    }
    /// Backup eligible: a synced passkey (BE).
    pub fn backup_eligible(self) -> bool {
        self.0 & 0x08 != 0
    }
    /// Backed up (BS).
    pub fn backed_up(self) -> bool {
        self.0 & 0x10 != 0
    }
    fn attested(self) -> bool {
        self.0 & 0x40 != 0
    }
    fn extensions(self) -> bool {
        self.0 & 0x80 != 0
    }
}

/// The credential an authenticator created (attested credential data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedCredential {
    pub aaguid: [u8; 16],
    pub credential_id: Vec<u8>,
    /// The COSE_Key as sent (stored, to verify assertions later).
    pub cose_key: Vec<u8>,
    pub public_key: PublicKey,
}

/// Parsed authenticator data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatorData {
    pub rp_id_hash: [u8; 32],
    pub flags: Flags,
    pub sign_count: u32,
    pub credential: Option<AttestedCredential>,
}

impl AuthenticatorData {
    pub fn parse(data: &[u8]) -> Result<AuthenticatorData, WebauthnError> {
        if data.len() < 37 {
            return fail("the authenticator data is too short");
        }
        let mut rp_id_hash = [0_u8; 32];
        rp_id_hash.copy_from_slice(&data[..32]);
        let flags = Flags(data[32]);
        let sign_count = u32::from_be_bytes([data[33], data[34], data[35], data[36]]);
        let mut rest = &data[37..];
        let credential = if flags.attested() {
            if rest.len() < 18 {
                return fail("the attested credential data is too short");
            }
            let mut aaguid = [0_u8; 16];
            aaguid.copy_from_slice(&rest[..16]);
            let id_len = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
            if id_len == 0 || id_len > MAX_CREDENTIAL_ID || rest.len() < 18 + id_len {
                return fail("the credential id is empty, too long, or longer than the data");
            }
            let credential_id = rest[18..18 + id_len].to_vec();
            let key_bytes = &rest[18 + id_len..];
            let (key, used) = decode_cbor(key_bytes)?;
            let public_key = PublicKey::from_cose(&key)?;
            let cose_key = key_bytes[..used].to_vec();
            rest = &key_bytes[used..];
            Some(AttestedCredential { aaguid, credential_id, cose_key, public_key })
        } else {
            None
        };
        if flags.extensions() {
            let (extensions, used) = decode_cbor(rest)?;
            if !matches!(extensions, Cbor::Map(_)) {
                return fail("the authenticator's extension data is not a map");
            }
            rest = &rest[used..];
        }
        if flags.backed_up() && !flags.backup_eligible() {
            return fail("the authenticator says the credential is backed up but cannot be");
        }
        if !rest.is_empty() {
            return fail("the authenticator data has bytes after its end");
        }
        Ok(AuthenticatorData { rp_id_hash, flags, sign_count, credential })
    }
}

/// How the authenticator vouched for the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attestation {
    /// `none`: no statement.
    None,
    /// `packed` self attestation: signed with the credential's own key.
    SelfSigned { alg: i64, sig: Vec<u8> },
    /// `packed` with a certificate chain: signed with the first certificate's key. Whether the
    /// chain leads to a trusted root is a separate question (attestation enforcement).
    Certified { alg: i64, sig: Vec<u8>, chain: Vec<Vec<u8>> },
}

/// A decoded attestation object: the statement and the authenticator data it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationObject {
    pub attestation: Attestation,
    pub auth_data_bytes: Vec<u8>,
    pub auth_data: AuthenticatorData,
}

impl AttestationObject {
    /// Reads an attestation object; only the `none` and `packed` formats are accepted (as Entra's
    /// Graph provisioning).
    pub fn parse(bytes: &[u8]) -> Result<AttestationObject, WebauthnError> {
        let (object, used) = decode_cbor(bytes)?;
        if used != bytes.len() {
            return fail("the attestation object has bytes after its end");
        }
        let Some(Cbor::Bytes(auth_data_bytes)) = object.text_key("authData") else {
            return fail("the attestation object has no authData");
        };
        let statement = object.text_key("attStmt");
        let attestation = match (object.text_key("fmt"), statement) {
            (Some(Cbor::Text(fmt)), Some(Cbor::Map(entries))) if fmt == "none" && entries.is_empty() => {
                Attestation::None
            }
            (Some(Cbor::Text(fmt)), Some(statement)) if fmt == "packed" => {
                let alg = match statement.text_key("alg") {
                    Some(Cbor::Int(it)) => i64::try_from(*it).map_err(|_| WebauthnError("alg".into()))?,
                    _ => return fail("a packed statement needs alg"),
                };
                let Some(Cbor::Bytes(sig)) = statement.text_key("sig") else {
                    return fail("a packed statement needs sig");
                };
                match statement.text_key("x5c") {
                    None => Attestation::SelfSigned { alg, sig: sig.clone() },
                    Some(Cbor::Array(certs)) if !certs.is_empty() => {
                        let chain = certs
                            .iter()
                            .map(|it| match it {
                                Cbor::Bytes(der) => Ok(der.clone()),
                                _ => fail("x5c must hold certificates"),
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        Attestation::Certified { alg, sig: sig.clone(), chain }
                    }
                    _ => return fail("x5c must hold certificates"),
                }
            }
            (Some(Cbor::Text(fmt)), _) => {
                return fail(format!(
                    "attestation format '{fmt}' is not accepted: use 'none' or 'packed' (ask for attestation 'direct' or 'none')"
                ));
            }
            _ => return fail("the attestation object has no fmt"),
        };
        let auth_data = AuthenticatorData::parse(auth_data_bytes)?;
        Ok(AttestationObject { attestation, auth_data_bytes: auth_data_bytes.clone(), auth_data })
    }
}

/// What the browser (or script) says it did: `clientDataJSON`'s fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientData {
    pub kind: String,
    /// Base64URL, as sent.
    pub challenge: String,
    pub origin: String,
    pub cross_origin: bool,
}

/// Checks client data against the ceremony: its type (`webauthn.create` or `webauthn.get`), the
/// origin (the relying party's own) and no cross-origin use. The challenge is checked by the
/// caller against the stored one (it is single-use and lives in the database).
pub fn check_client_data(data: &ClientData, kind: &str, origin: &str) -> Result<(), WebauthnError> {
    if data.kind != kind {
        return fail(format!("clientDataJSON.type is '{}', not '{kind}'", data.kind));
    }
    if data.origin != origin {
        return fail(format!("clientDataJSON.origin '{}' is not this server's origin '{origin}'", data.origin));
    }
    if data.cross_origin {
        return fail("the ceremony ran in a cross-origin frame");
    }
    Ok(())
}

/// The checks on a new credential's authenticator data: made for this relying party, with the
/// user present and verified, carrying the credential.
pub fn check_registration<'a>(
    auth: &'a AuthenticatorData,
    rp_id: &str,
) -> Result<&'a AttestedCredential, WebauthnError> {
    let expected: [u8; 32] = Sha256::digest(rp_id.as_bytes()).into();
    if auth.rp_id_hash != expected {
        return fail(format!("the credential was made for another relying party than '{rp_id}'"));
    }
    if !auth.flags.user_present() {
        return fail("the user was not present");
    }
    if !auth.flags.user_verified() {
        return fail("the authenticator did not verify the user (a PIN or biometric is required)");
    }
    auth.credential.as_ref().ok_or_else(|| WebauthnError("the response carries no credential".into()))
}

/// The checks on a sign-in's (an assertion's) authenticator data: made for this relying party,
/// with the user present and verified. The credential's signature is checked by the caller.
pub fn check_assertion(auth: &AuthenticatorData, rp_id: &str) -> Result<(), WebauthnError> {
    let expected: [u8; 32] = Sha256::digest(rp_id.as_bytes()).into();
    if auth.rp_id_hash != expected {
        return fail(format!("the passkey answered for another relying party than '{rp_id}'"));
    }
    if !auth.flags.user_present() {
        return fail("the user was not present");
    }
    if !auth.flags.user_verified() {
        return fail("the authenticator did not verify the user (a PIN or biometric is required)");
    }
    Ok(())
}

/// Whether a signature counter says the credential may have been cloned (WebAuthn §7.2, step
/// 21): once either the stored or the received counter is not zero, each use must count higher
/// than the last. Two zeros mean an authenticator without a counter (synced passkeys).
pub fn counter_went_back(stored: u32, received: u32) -> bool {
    (stored != 0 || received != 0) && received <= stored
}

/// The bytes an attestation or assertion signature covers: authenticator data then the SHA-256
/// of the client data.
pub fn signed_bytes(auth_data: &[u8], client_data_json: &[u8]) -> Vec<u8> {
    let hash: [u8; 32] = Sha256::digest(client_data_json).into();
    [auth_data, &hash[..]].concat()
}

/// `id-fido-gen-ce-aaguid` (1.3.6.1.4.1.45724.1.1.4), the OID's content octets.
const AAGUID_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0xe5, 0x1c, 0x01, 0x01, 0x04];
/// `extKeyUsage` (2.5.29.37).
const EKU_OID: &[u8] = &[0x55, 0x1d, 0x25];
/// The general-purpose key usages an attestation certificate must not have: TLS server and
/// client, code signing (1.3.6.1.5.5.7.3.1 to .3).
const GENERAL_PURPOSES: [&[u8]; 3] = [
    &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01],
    &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02],
    &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03],
];

/// One DER element: its tag, its content and what follows it. Lengths up to four octets.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count].iter().fold(0_usize, |acc, it| (acc << 8) | usize::from(*it));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The elements of a constructed DER value's content, in order; `None` if any is malformed.
fn der_items(mut content: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut items = Vec::new();
    while !content.is_empty() {
        let (tag, value, rest) = der(content)?;
        items.push((tag, value));
        content = rest;
    }
    Some(items)
}

/// What the packed attestation rules (WebAuthn §8.2.1) look at in an attestation certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttestationCertificate {
    pub is_version_3: bool,
    /// The subject's attributes: country, organisation, organisational unit, common name.
    pub country: bool,
    pub organization: bool,
    pub organizational_unit: Option<String>,
    pub common_name: bool,
    /// The `id-fido-gen-ce-aaguid` extension's AAGUID.
    pub aaguid: Option<[u8; 16]>,
    /// An extended key usage for TLS or code signing: a general-purpose certificate.
    pub general_purpose: bool,
}

impl AttestationCertificate {
    /// Whether the certificate is one a `packed` attestation may carry (WebAuthn §8.2.1):
    /// version 3; a subject with C, O, CN and the OU `Authenticator Attestation`; not issued
    /// for TLS or code signing; and, for Keyward to call it attested, naming its model (the
    /// AAGUID extension), since the roots it trusts are not tied to models.
    pub fn is_packed_attestation(&self) -> bool {
        self.is_version_3
            && self.country
            && self.organization
            && self.common_name
            && self.organizational_unit.as_deref() == Some("Authenticator Attestation")
            && !self.general_purpose
            && self.aaguid.is_some()
    }
}

fn malformed<T>() -> Result<T, WebauthnError> {
    fail("the attestation certificate is malformed")
}

/// Reads an attestation certificate's version, subject and extensions by its structure
/// (Certificate → TBSCertificate → subject, `[3]` extensions). A second AAGUID extension, a
/// critical one, or one whose value is not exactly a 16-byte OCTET STRING is an error.
pub fn read_attestation_certificate(der_bytes: &[u8]) -> Result<AttestationCertificate, WebauthnError> {
    let Some((0x30, certificate, [])) = der(der_bytes) else { return malformed() };
    let Some((0x30, tbs, _)) = der(certificate) else { return malformed() };
    let Some(items) = der_items(tbs) else { return malformed() };
    let mut facts = AttestationCertificate::default();
    let mut fields = items.as_slice();
    if let Some(((0xa0, version), rest)) = fields.split_first() {
        facts.is_version_3 = matches!(der(version), Some((0x02, [2], [])));
        fields = rest;
    }
    // serial, signature, issuer, validity, then the subject.
    let Some((0x30, subject)) = fields.get(4).copied() else { return malformed() };
    for (tag, set) in der_items(subject).map_or_else(malformed, Ok)? {
        if tag != 0x31 {
            return malformed();
        }
        for (tag, attribute) in der_items(set).map_or_else(malformed, Ok)? {
            let parts = der_items(attribute).filter(|_| tag == 0x30).unwrap_or_default();
            let [(0x06, oid), (_, value)] = parts.as_slice() else {
                return malformed();
            };
            match *oid {
                [0x55, 0x04, 0x06] => facts.country = true,
                [0x55, 0x04, 0x0a] => facts.organization = true,
                [0x55, 0x04, 0x03] => facts.common_name = true,
                [0x55, 0x04, 0x0b] => facts.organizational_unit = std::str::from_utf8(value).ok().map(str::to_owned),
                _ => (),
            }
        }
    }
    let Some((_, extensions)) = fields.iter().copied().find(|(tag, _)| *tag == 0xa3) else { return Ok(facts) };
    let Some((0x30, list, [])) = der(extensions) else { return malformed() };
    for (tag, extension) in der_items(list).map_or_else(malformed, Ok)? {
        let Some(parts) = der_items(extension).filter(|_| tag == 0x30) else { return malformed() };
        let (oid, critical, value) = match parts.as_slice() {
            [(0x06, oid), (0x04, value)] => (*oid, false, *value),
            [(0x06, oid), (0x01, flag), (0x04, value)] => (*oid, *flag != [0x00], *value),
            _ => return malformed(),
        };
        if oid == AAGUID_OID {
            if critical {
                return fail("the certificate marks its AAGUID extension critical");
            }
            let Some((0x04, aaguid, [])) = der(value) else { return malformed() };
            let Ok(aaguid) = <[u8; 16]>::try_from(aaguid) else { return malformed() };
            if facts.aaguid.replace(aaguid).is_some() {
                return fail("the certificate names its AAGUID twice");
            }
        } else if oid == EKU_OID {
            let Some((0x30, purposes, [])) = der(value) else { return malformed() };
            for (tag, purpose) in der_items(purposes).map_or_else(malformed, Ok)? {
                facts.general_purpose |= tag == 0x06 && GENERAL_PURPOSES.contains(&purpose);
            }
        }
    }
    Ok(facts)
}

/// An AAGUID in its usual text form.
pub fn aaguid_text(aaguid: &[u8; 16]) -> String {
    let hex: String = aaguid.iter().map(|it| format!("{it:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A COSE ES256 key with the given coordinates.
    fn es256_key(x: [u8; 32], y: [u8; 32]) -> Vec<u8> {
        let mut out = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20];
        out.extend(x);
        out.extend([0x22, 0x58, 0x20]);
        out.extend(y);
        out
    }

    fn auth_data(rp_id: &str, flags: u8, key: &[u8]) -> Vec<u8> {
        let mut out: Vec<u8> = Sha256::digest(rp_id.as_bytes()).to_vec();
        out.push(flags);
        out.extend(7_u32.to_be_bytes());
        out.extend([0xaa; 16]);
        out.extend(4_u16.to_be_bytes());
        out.extend([1, 2, 3, 4]);
        out.extend(key);
        out
    }

    #[test]
    fn cbor_reads_what_webauthn_sends_and_refuses_lies() {
        assert_eq!(decode_cbor(&[0x18, 0x64]).expect("int"), (Cbor::Int(100), 2));
        assert_eq!(decode_cbor(&[0x38, 0x63]).expect("negative"), (Cbor::Int(-100), 2));
        assert_eq!(decode_cbor(&[0x43, 1, 2, 3]).expect("bytes").0, Cbor::Bytes(vec![1, 2, 3]));
        assert_eq!(decode_cbor(&[0x62, b'h', b'i']).expect("text").0, Cbor::Text("hi".into()));
        assert_eq!(
            decode_cbor(&[0xa1, 0x61, b'a', 0xf5]).expect("map").0,
            Cbor::Map(vec![(Cbor::Text("a".into()), Cbor::Bool(true))])
        );
        // A length beyond the data, an array claiming billions of items, a tag, deep nesting.
        assert!(decode_cbor(&[0x5a, 0xff, 0xff, 0xff, 0xff, 1]).is_err());
        assert!(decode_cbor(&[0x9b, 0, 0, 0, 1, 0, 0, 0, 0]).is_err());
        assert!(decode_cbor(&[0xc0, 0x01]).is_err());
        assert!(decode_cbor(&[0x81; 40]).is_err());
        assert!(decode_cbor(&[]).is_err());
        assert!(decode_cbor(&[0xa2, 0x01, 0x01, 0x01, 0x02]).is_err(), "a key twice");
        // A map of 12,000 distinct keys (a quadratic duplicate check) or a long array: refused.
        let mut big = vec![0xb9, 0x2e, 0xe0];
        for key in 0..12_000_u16 {
            big.push(0x19);
            big.extend_from_slice(&key.to_be_bytes());
            big.push(0x00);
        }
        assert!(decode_cbor(&big).is_err_and(|err| err.0.contains("too many entries")));
        let mut array = vec![0x98, 65];
        array.extend([0x00; 65]);
        assert!(decode_cbor(&array).is_err());
        let mut array = vec![0x98, 64];
        array.extend([0x00; 64]);
        assert!(decode_cbor(&array).is_ok());
    }

    #[test]
    fn authenticator_data_and_registration_checks() {
        let key = es256_key([1; 32], [2; 32]);
        let data = auth_data("login.contoso.test", 0x45 | 0x08, &key);
        let parsed = AuthenticatorData::parse(&data).expect("parses");
        assert_eq!(parsed.sign_count, 7);
        assert!(parsed.flags.backup_eligible() && !parsed.flags.backed_up());
        let credential = check_registration(&parsed, "login.contoso.test").expect("valid");
        assert_eq!(credential.credential_id, vec![1, 2, 3, 4]);
        assert_eq!(credential.cose_key, key);
        assert_eq!(credential.public_key.algorithm(), -7);
        assert_eq!(aaguid_text(&credential.aaguid), "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa");
        assert!(check_registration(&parsed, "evil.test").is_err(), "another relying party");
        assert!(
            AuthenticatorData::parse(&auth_data("login.contoso.test", 0x45 | 0x10, &key)).is_err(),
            "BS without BE"
        );
        let unverified = AuthenticatorData::parse(&auth_data("login.contoso.test", 0x41, &key)).expect("parses");
        assert!(check_registration(&unverified, "login.contoso.test").is_err(), "no user verification");
        let mut trailing = data.clone();
        trailing.push(0);
        assert!(AuthenticatorData::parse(&trailing).is_err());
        assert!(AuthenticatorData::parse(&data[..50]).is_err());
    }

    /// A DER element.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.push(0x82);
            out.extend((content.len() as u16).to_be_bytes());
        }
        out.extend(content);
        out
    }

    fn attribute(oid: &[u8], value: &str) -> Vec<u8> {
        tlv(0x31, &tlv(0x30, &[tlv(0x06, oid), tlv(0x0c, value.as_bytes())].concat()))
    }

    /// A certificate with this subject and these extensions (serial, algorithms, issuer,
    /// validity and key left empty: only the structure matters here).
    fn certificate(subject: &[Vec<u8>], extensions: &[Vec<u8>]) -> Vec<u8> {
        let mut tbs = tlv(0xa0, &tlv(0x02, &[2]));
        for _ in 0..4 {
            tbs.extend(tlv(0x30, &[]));
        }
        tbs.extend(tlv(0x30, &subject.concat()));
        tbs.extend(tlv(0x30, &[]));
        if !extensions.is_empty() {
            tbs.extend(tlv(0xa3, &tlv(0x30, &extensions.concat())));
        }
        tlv(0x30, &[tlv(0x30, &tbs), tlv(0x30, &[]), tlv(0x03, &[0])].concat())
    }

    fn aaguid_extension(value: &[u8]) -> Vec<u8> {
        tlv(0x30, &[tlv(0x06, AAGUID_OID), tlv(0x04, &tlv(0x04, value))].concat())
    }

    #[test]
    fn attestation_certificates_are_read_by_their_structure() {
        let subject = [
            attribute(&[0x55, 0x04, 0x06], "SE"),
            attribute(&[0x55, 0x04, 0x0a], "Contoso Keys"),
            attribute(&[0x55, 0x04, 0x0b], "Authenticator Attestation"),
            attribute(&[0x55, 0x04, 0x03], "Contoso Key"),
        ];
        let good =
            read_attestation_certificate(&certificate(&subject, &[aaguid_extension(&[0xab; 16])])).expect("reads");
        assert_eq!(good.aaguid, Some([0xab; 16]));
        assert!(good.is_packed_attestation());
        // The extension's bytes in a subject value are not the extension.
        let decoy = [tlv(0x06, AAGUID_OID), tlv(0x04, &[0x04, 0x10]), vec![0xcd; 16]].concat();
        let mut decoy_subject = subject.to_vec();
        decoy_subject.push(tlv(0x31, &tlv(0x30, &[tlv(0x06, &[0x55, 0x04, 0x05]), tlv(0x04, &decoy)].concat())));
        let decoyed = read_attestation_certificate(&certificate(&decoy_subject, &[])).expect("reads");
        assert_eq!(decoyed.aaguid, None);
        assert!(!decoyed.is_packed_attestation(), "no AAGUID extension");
        // Another OU, a TLS server certificate, a second or malformed AAGUID.
        let mut other = subject.to_vec();
        other[2] = attribute(&[0x55, 0x04, 0x0b], "Web Servers");
        assert!(
            !read_attestation_certificate(&certificate(&other, &[aaguid_extension(&[1; 16])]))
                .expect("r")
                .is_packed_attestation()
        );
        let server_auth =
            tlv(0x30, &[tlv(0x06, EKU_OID), tlv(0x04, &tlv(0x30, &tlv(0x06, GENERAL_PURPOSES[0])))].concat());
        let tls = read_attestation_certificate(&certificate(&subject, &[aaguid_extension(&[1; 16]), server_auth]))
            .expect("reads");
        assert!(tls.general_purpose && !tls.is_packed_attestation());
        let twice = certificate(&subject, &[aaguid_extension(&[1; 16]), aaguid_extension(&[2; 16])]);
        assert!(read_attestation_certificate(&twice).is_err());
        assert!(read_attestation_certificate(&certificate(&subject, &[aaguid_extension(&[1; 15])])).is_err());
        let critical =
            tlv(0x30, &[tlv(0x06, AAGUID_OID), tlv(0x01, &[0xff]), tlv(0x04, &tlv(0x04, &[1; 16]))].concat());
        assert!(read_attestation_certificate(&certificate(&subject, &[critical])).is_err());
        assert!(read_attestation_certificate(&[0x30, 0x05, 1]).is_err(), "truncated");
        let mut trailing = certificate(&subject, &[]);
        trailing.push(0);
        assert!(read_attestation_certificate(&trailing).is_err());
    }

    #[test]
    fn assertions_and_counters_are_checked() {
        let mut data: Vec<u8> = Sha256::digest(b"login.contoso.test").to_vec();
        data.push(0x05);
        data.extend(9_u32.to_be_bytes());
        let parsed = AuthenticatorData::parse(&data).expect("parses");
        assert_eq!(check_assertion(&parsed, "login.contoso.test"), Ok(()));
        assert!(check_assertion(&parsed, "contoso.test").is_err(), "another relying party");
        data[32] = 0x01;
        let unverified = AuthenticatorData::parse(&data).expect("parses");
        assert!(check_assertion(&unverified, "login.contoso.test").is_err(), "no user verification");
        data[32] = 0x04;
        let absent = AuthenticatorData::parse(&data).expect("parses");
        assert!(check_assertion(&absent, "login.contoso.test").is_err(), "no user presence");
        assert!(!counter_went_back(0, 0), "no counter");
        assert!(!counter_went_back(4, 5));
        assert!(counter_went_back(5, 5), "the same count twice");
        assert!(counter_went_back(5, 3));
        assert!(counter_went_back(5, 0), "a counter that stopped counting");
        assert!(!counter_went_back(0, 1));
    }

    #[test]
    fn client_data_is_checked() {
        let data = ClientData {
            kind: "webauthn.create".into(),
            challenge: "abc".into(),
            origin: "https://login.contoso.test".into(),
            cross_origin: false,
        };
        assert_eq!(check_client_data(&data, "webauthn.create", "https://login.contoso.test"), Ok(()));
        assert!(check_client_data(&data, "webauthn.get", "https://login.contoso.test").is_err());
        assert!(check_client_data(&data, "webauthn.create", "https://evil.test").is_err());
        let framed = ClientData { cross_origin: true, ..data };
        assert!(check_client_data(&framed, "webauthn.create", "https://login.contoso.test").is_err());
    }
}
