//! The 32-byte identification string Rserve sends on connect (`Rsrv.h`, `IDstring`).
//!
//! Layout: `[0..4]` `"Rsrv"`, `[4..8]` protocol version (`"0103"`), `[8..12]` protocol
//! (`"QAP1"`), then five 4-byte attributes in any order. Attributes made of `\r`, `\n`,
//! space and `-` are fillers. Known ones: `ARpt` (plaintext login), `ARuc` (unix-crypt
//! login), `ARm5` (MD5 login), `K***` (crypt salt), `R***` (R version), `TLS\n` (the server
//! can switch this connection to TLS with `CMD_switch`).

use crate::error::Error;
use crate::protocol::ID_STRING_LEN;

/// What the server announced in its ID string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Protocol name, `"QAP1"`.
    pub protocol: String,
    /// Protocol version, e.g. `"0103"` (Rserve ≥ 0.5).
    pub version: String,
    /// `ARpt`: plaintext login (`CMD_login` with `"user\npwd"`) is accepted.
    pub auth_plaintext: bool,
    /// `ARuc`: unix `crypt(3)` login is accepted (not implemented by this client).
    pub auth_crypt: bool,
    /// `ARm5`: MD5 login is accepted (not implemented by this client).
    pub auth_md5: bool,
    /// The `K***` key: salt for crypt login (its first two characters).
    pub crypt_salt: Option<String>,
    /// `TLS\n`: the server offers switching to TLS with `CMD_switch` (unused here).
    pub tls_offered: bool,
    /// `R***` attribute, e.g. `"R151"`, if present.
    pub r_version: Option<String>,
    /// Attributes not listed above, verbatim.
    pub other_attributes: Vec<String>,
}

impl ServerInfo {
    /// True when the server requires a login before any other command.
    pub fn auth_required(&self) -> bool {
        self.auth_plaintext || self.auth_crypt || self.auth_md5
    }
}

/// Parses the 32-byte ID string.
///
/// Errors: [`Error::TlsRequired`] when the bytes are a TLS record (the server expects a TLS
/// ClientHello); [`Error::Protocol`] when the signature is not `"Rsrv"`, the protocol is not
/// `QAP1`, or the version is `0100` (whose eval replies lack the `DT_SEXP` head).
pub fn parse_id_string(id: &[u8]) -> Result<ServerInfo, Error> {
    let id: &[u8; ID_STRING_LEN] = id.try_into().map_err(|_| {
        Error::Protocol(format!(
            "ID string must be {ID_STRING_LEN} bytes, got {}",
            id.len()
        ))
    })?;
    // A TLS record starts with content type 0x14..=0x17 and major version 3.
    if (0x14..=0x17).contains(&id[0]) && id[1] == 3 {
        return Err(Error::TlsRequired(
            "the server answered with a TLS record instead of the Rserve ID string".into(),
        ));
    }
    if &id[0..4] != b"Rsrv" {
        return Err(Error::Protocol(format!(
            "not an Rserve server: ID string starts with {:?}",
            String::from_utf8_lossy(&id[0..4])
        )));
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let version = text(&id[4..8]);
    let protocol = text(&id[8..12]);
    if protocol != "QAP1" {
        return Err(Error::Protocol(format!(
            "unsupported protocol {protocol:?} (want QAP1)"
        )));
    }
    if !version.bytes().all(|b| b.is_ascii_digit()) || version.as_str() < "0101" {
        return Err(Error::Protocol(format!(
            "unsupported QAP1 version {version:?}"
        )));
    }
    let mut info = ServerInfo {
        protocol,
        version,
        auth_plaintext: false,
        auth_crypt: false,
        auth_md5: false,
        crypt_salt: None,
        tls_offered: false,
        r_version: None,
        other_attributes: Vec::new(),
    };
    for attr in id[12..].chunks_exact(4) {
        match attr {
            b"ARpt" => info.auth_plaintext = true,
            b"ARuc" => info.auth_crypt = true,
            b"ARm5" => info.auth_md5 = true,
            b"TLS\n" => info.tls_offered = true,
            a if a.iter().all(|b| b" \r\n-".contains(b)) => {}
            [b'K', key @ ..] => info.crypt_salt = Some(text(key).trim_end().to_string()),
            [b'R', rest @ ..] if rest.iter().all(u8::is_ascii_digit) => {
                info.r_version = Some(text(attr));
            }
            a => info.other_attributes.push(text(a)),
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_server_without_auth() {
        let info = parse_id_string(b"Rsrv0103QAP1\r\n\r\n--------------\r\n").unwrap();
        assert_eq!(info.protocol, "QAP1");
        assert_eq!(info.version, "0103");
        assert!(!info.auth_required());
        assert!(info.other_attributes.is_empty());
    }

    #[test]
    fn crypt_and_plaintext_with_salt_and_tls() {
        let info = parse_id_string(b"Rsrv0103QAP1\r\n\r\nARucKab ARptTLS\n").unwrap();
        assert!(info.auth_crypt && info.auth_plaintext && info.tls_offered);
        assert_eq!(info.crypt_salt.as_deref(), Some("ab"));
        // Verbatim from Debian's Rserve 1.8-11 with `auth required` + `plaintext enable`.
        let info = parse_id_string(b"Rsrv0103QAP1\r\n\r\nARucKIN ARpt--\r\n").unwrap();
        assert!(info.auth_crypt && info.auth_plaintext && !info.tls_offered);
        assert_eq!(info.crypt_salt.as_deref(), Some("IN"));
        assert!(info.other_attributes.is_empty(), "{info:?}");
    }

    #[test]
    fn tls_record_and_garbage() {
        let mut tls = [0u8; 32];
        tls[0] = 0x16;
        tls[1] = 3;
        assert!(matches!(parse_id_string(&tls), Err(Error::TlsRequired(_))));
        assert!(matches!(
            parse_id_string(b"HTTP/1.1 400 Bad Request\r\n\r\nabcd"),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            parse_id_string(b"Rsrv0100QAP1\r\n\r\n--------------\r\n"),
            Err(Error::Protocol(_))
        ));
        assert!(parse_id_string(b"short").is_err());
    }
}
