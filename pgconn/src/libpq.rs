//! libpq `key=value` strings, as `conninfo_parse` reads them: pairs split by
//! whitespace, spaces allowed around `=`, values either bare (ending at
//! whitespace) or in single quotes; in both a backslash escapes the next
//! character (`\'`, `\\`).

use crate::error::{Format, ParseError};
use crate::params::{ConnParams, Key};

/// Keys pgvault understands, by their libpq names.
pub(crate) fn key(name: &str) -> Option<Key> {
    Some(match name {
        "host" | "hostaddr" => Key::Host,
        "port" => Key::Port,
        "dbname" => Key::Database,
        "user" => Key::User,
        "password" => Key::Password,
        "sslmode" => Key::SslMode,
        "sslrootcert" => Key::SslRootCert,
        "application_name" => Key::ApplicationName,
        "connect_timeout" => Key::ConnectTimeout,
        _ => return None,
    })
}

pub(crate) fn parse(text: &str) -> Result<ConnParams, ParseError> {
    let err =
        |key: Option<&str>, pos: usize, reason| ParseError::new(Format::Libpq, key, pos, reason);
    let bytes = text.as_bytes();
    let mut params = ConnParams::default();
    let mut i = 0;
    let skip_ws = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut any = false;
    loop {
        i = skip_ws(i);
        if i >= bytes.len() {
            break;
        }
        let key_start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let name = &text[key_start..i];
        i = skip_ws(i);
        if i >= bytes.len() || bytes[i] != b'=' {
            return Err(err(Some(name), key_start, "expected \"=\" after the key"));
        }
        i = skip_ws(i + 1);
        let value_start = i;
        let mut value = String::new();
        if i < bytes.len() && bytes[i] == b'\'' {
            i += 1;
            loop {
                let Some(c) = text[i..].chars().next() else {
                    return Err(err(
                        Some(name),
                        value_start,
                        "the quoted value has no closing quote",
                    ));
                };
                i += c.len_utf8();
                match c {
                    '\'' => break,
                    '\\' => match text[i..].chars().next() {
                        Some(next) => {
                            value.push(next);
                            i += next.len_utf8();
                        }
                        None => {
                            return Err(err(
                                Some(name),
                                value_start,
                                "the quoted value has no closing quote",
                            ));
                        }
                    },
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = text[i..].chars().next() {
                if c.is_ascii_whitespace() {
                    break;
                }
                i += c.len_utf8();
                if c == '\\' {
                    if let Some(next) = text[i..].chars().next() {
                        value.push(next);
                        i += next.len_utf8();
                    }
                } else {
                    value.push(c);
                }
            }
        }
        let Some(k) = key(name) else {
            return Err(err(Some(name), key_start, "unsupported key"));
        };
        params
            .set(k, value)
            .map_err(|reason| err(Some(name), value_start, reason))?;
        any = true;
    }
    if !any {
        return Err(err(None, 0, "the connection string is empty"));
    }
    params
        .check()
        .map_err(|(_, reason)| err(Some("sslmode"), 0, reason))?;
    Ok(params)
}

/// Quotes a value when it is empty or holds whitespace, quotes or backslashes.
fn quote(value: &str) -> String {
    if !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '\'' | '\\' | ';' | '"'))
    {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

pub(crate) fn format(p: &ConnParams) -> String {
    let mut pairs: Vec<String> = Vec::new();
    let mut add = |k: &str, v: &str| pairs.push(format!("{k}={}", quote(v)));
    if let Some(v) = &p.host {
        add("host", v);
    }
    if let Some(v) = p.port {
        add("port", &v.to_string());
    }
    if let Some(v) = &p.database {
        add("dbname", v);
    }
    if let Some(v) = &p.user {
        add("user", v);
    }
    if let Some(v) = &p.password {
        add("password", v.expose());
    }
    add("sslmode", p.ssl_mode.as_libpq());
    if let Some(v) = &p.ssl_root_cert {
        add("sslrootcert", &v.to_string_lossy());
    }
    if let Some(v) = &p.application_name {
        add("application_name", v);
    }
    if let Some(v) = p.connect_timeout {
        add("connect_timeout", &v.as_secs().to_string());
    }
    pairs.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SslMode;

    #[test]
    fn reads_quotes_escapes_and_spaces_around_equals() {
        let p = parse(r"host = db.example port=5433 user=alice password='it\'s a \\ secret' dbname=app sslmode=verify-full").unwrap();
        assert_eq!(p.host.as_deref(), Some("db.example"));
        assert_eq!(p.port, Some(5433));
        assert_eq!(p.password.unwrap().expose(), r"it's a \ secret");
        assert_eq!(p.database.as_deref(), Some("app"));
        assert_eq!(p.ssl_mode, SslMode::VerifyFull);
        let p = parse(r"user=a\ b password=x").unwrap();
        assert_eq!(p.user.as_deref(), Some("a b"));
    }

    #[test]
    fn errors_name_key_and_position_never_the_value() {
        let e = parse("host=h password='hunter2").unwrap_err();
        assert_eq!((e.key.as_deref(), e.position), (Some("password"), 16));
        assert!(!e.to_string().contains("hunter2"));
        let e = parse("host=h port=abc").unwrap_err();
        assert_eq!((e.key.as_deref(), e.position), (Some("port"), 12));
        let e = parse("host=h bogus=1").unwrap_err();
        // Unknown keys are withheld (they could be a stray piece of password).
        assert_eq!(
            (e.key.as_deref(), e.position, e.reason),
            (None, 7, "unsupported key")
        );
        let e = parse("host=h sslcert=x").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("sslcert"));
        let e = parse("password=x hunter2").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(e.code(), "UserErrorSecretValueInUnsupportedFormat");
    }
}
