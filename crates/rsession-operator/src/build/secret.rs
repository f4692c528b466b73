//! The credentials Secret: Rserve user name, password and Rserve password file.
//!
//! The password is generated once (by [`generate_password`]) and then read back from the
//! existing Secret on every later reconcile, so it never rotates under a connected client.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rand::Rng;
use rand::distr::Alphanumeric;
use rsession_api::well_known as wk;
use sha1::{Digest, Sha1};

use super::{Component, owned_meta, secret_name};
use crate::validate::Session;

/// Rserve user name written to every credentials Secret.
pub const RSERVE_USER: &str = "rsession";

/// Length of generated passwords in characters (alphanumeric, about 190 bits of entropy).
pub const PASSWORD_LEN: usize = 32;

/// A fresh random password from the thread-local CSPRNG.
pub fn generate_password() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// The password stored in an existing credentials Secret, if it has a usable one.
pub fn existing_password(secret: &Secret) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(wk::SECRET_KEY_PASSWORD)?;
    let password = String::from_utf8(bytes.0.clone()).ok()?;
    (password.len() >= PASSWORD_LEN && password.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(password)
}

/// The Rserve `pwdfile` line for `password` with the password stored as its hash:
/// `rsession $<SHA-1, 40 lower-case hex digits>` and a newline (Rserve 1.7 NEWS: "Passwords file
/// can contain MD5 or SHA1 hash of a password instead of the plaintext password for non-crypt
/// authentication"; the pods' Rserve allows plaintext authentication only). The pod carries it
/// in [`wk::ANNOTATION_RSERVE_PWDFILE`]; SHA-1's known weakness is collisions, not preimages,
/// and the password is ~190 random bits.
pub fn pwdfile_entry(password: &str) -> String {
    format!(
        "{RSERVE_USER} ${}\n",
        hex::encode(Sha1::digest(password.as_bytes()))
    )
}

/// Builds the credentials Secret holding `password`: keys `username`, `password` and
/// `rserve.pwd` (Rserve `pwdfile` format: one `<user> <password>` line; only for pods created
/// before [`pwdfile_entry`] replaced it).
pub fn build_secret(s: &Session, password: &str) -> Secret {
    let data = BTreeMap::from([
        (
            wk::SECRET_KEY_USERNAME.to_owned(),
            ByteString(RSERVE_USER.into()),
        ),
        (
            wk::SECRET_KEY_PASSWORD.to_owned(),
            ByteString(password.into()),
        ),
        (
            wk::SECRET_KEY_PASSWORD_FILE.to_owned(),
            ByteString(format!("{RSERVE_USER} {password}\n").into_bytes()),
        ),
    ]);
    Secret {
        metadata: owned_meta(s, secret_name(&s.name), Component::Credentials),
        type_: Some("Opaque".into()),
        immutable: Some(false),
        data: Some(data),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{rsession, session_of};

    #[test]
    fn generated_passwords_are_long_random_and_differ() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn secret_holds_user_password_and_rserve_password_file() {
        let s = session_of(&rsession("s"));
        let secret = build_secret(&s, "p4ssw0rd");
        let data = secret.data.expect("data");
        assert_eq!(data["username"].0, b"rsession");
        assert_eq!(data["password"].0, b"p4ssw0rd");
        assert_eq!(data["rserve.pwd"].0, b"rsession p4ssw0rd\n");
        assert_eq!(secret.metadata.name.as_deref(), Some("s-credentials"));
    }

    #[test]
    fn pwdfile_entry_is_the_sha1_form_rserve_documents() {
        // Rserve's NEWS (1.7-0): password "bar" is stored as `$62cdb7020ff920e5aa642c3d4066950dd1f01f4d`.
        assert_eq!(
            pwdfile_entry("bar"),
            "rsession $62cdb7020ff920e5aa642c3d4066950dd1f01f4d\n"
        );
    }

    #[test]
    fn secret_is_owned_by_the_rsession() {
        let s = session_of(&rsession("s"));
        let owners = build_secret(&s, "x")
            .metadata
            .owner_references
            .expect("owners");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(owners[0].uid, "uid-s");
    }

    #[test]
    fn existing_password_is_reused_when_present() {
        let s = session_of(&rsession("s"));
        let pw = generate_password();
        assert_eq!(existing_password(&build_secret(&s, &pw)), Some(pw));
        assert_eq!(
            existing_password(&build_secret(&s, "short")),
            None,
            "too short: regenerate"
        );
    }
}
