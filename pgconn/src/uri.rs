//! `postgresql://` (or `postgres://`) URIs, as libpq reads them:
//! `postgresql://[user[:password]@][host][:port][/database][?key=value&…]`
//! with percent-encoding in every part, IPv6 hosts in brackets, and libpq
//! key names in the query.

use crate::error::{Format, ParseError};
use crate::params::{ConnParams, Key};

fn err(key: Option<&str>, pos: usize, reason: &'static str) -> ParseError {
    ParseError::new(Format::Uri, key, pos, reason)
}

/// Percent-decodes `part` (which starts at byte `pos` of the input).
fn decode(part: &str, pos: usize, key: &str) -> Result<String, ParseError> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = part
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex
                .filter(|_| bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit())
            else {
                return Err(err(
                    Some(key),
                    pos + i,
                    "a percent sign must start an escape such as %40",
                ));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| err(Some(key), pos, "the decoded value is not UTF-8"))
}

pub(crate) fn parse(text: &str) -> Result<ConnParams, ParseError> {
    let offset = text.len() - text.trim_start().len();
    let body = text.trim();
    let scheme_len = if body.len() >= 13 && body[..13].eq_ignore_ascii_case("postgresql://") {
        13
    } else if body.len() >= 11 && body[..11].eq_ignore_ascii_case("postgres://") {
        11
    } else {
        return Err(err(None, offset, "a URI must start with postgresql://"));
    };
    let start = offset + scheme_len;
    let rest = &text[start..offset + body.len()];
    let mut params = ConnParams::default();
    let set = |params: &mut ConnParams, k: Key, name: &str, v: String, pos: usize| {
        params
            .set(k, v)
            .map_err(|reason| err(Some(name), pos, reason))
    };

    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let (hostport, hostport_pos) = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    let user = decode(&userinfo[..colon], start, "user")?;
                    set(&mut params, Key::User, "user", user, start)?;
                    let password = decode(&userinfo[colon + 1..], start + colon + 1, "password")?;
                    set(
                        &mut params,
                        Key::Password,
                        "password",
                        password,
                        start + colon + 1,
                    )?;
                }
                None => {
                    let user = decode(userinfo, start, "user")?;
                    set(&mut params, Key::User, "user", user, start)?;
                }
            }
            (&authority[at + 1..], start + at + 1)
        }
        None => (authority, start),
    };
    let (host, port, port_pos) = if let Some(inner) = hostport.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return Err(err(
                Some("host"),
                hostport_pos,
                "an IPv6 address needs a closing \"]\"",
            ));
        };
        let after = &inner[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => {
                return Err(err(
                    Some("port"),
                    hostport_pos + close + 2,
                    "expected \":port\" after the IPv6 address",
                ));
            }
        };
        (inner[..close].to_string(), port, hostport_pos + close + 3)
    } else {
        match hostport.rfind(':') {
            Some(colon) => (
                decode(&hostport[..colon], hostport_pos, "host")?,
                Some(&hostport[colon + 1..]),
                hostport_pos + colon + 1,
            ),
            None => (decode(hostport, hostport_pos, "host")?, None, 0),
        }
    };
    set(&mut params, Key::Host, "host", host, hostport_pos)?;
    if let Some(port) = port {
        set(&mut params, Key::Port, "port", port.to_string(), port_pos)?;
    }

    let mut i = authority_end;
    if rest[i..].starts_with('/') {
        let path_end = rest[i..].find('?').map_or(rest.len(), |q| i + q);
        let database = decode(&rest[i + 1..path_end], start + i + 1, "dbname")?;
        set(
            &mut params,
            Key::Database,
            "dbname",
            database,
            start + i + 1,
        )?;
        i = path_end;
    }
    if rest[i..].starts_with('?') {
        let mut pos = i + 1;
        for pair in rest[i + 1..].split('&') {
            let pair_pos = start + pos;
            pos += pair.len() + 1;
            if pair.is_empty() {
                continue;
            }
            let Some(eq) = pair.find('=') else {
                return Err(err(None, pair_pos, "expected key=value in the query"));
            };
            let name = decode(&pair[..eq], pair_pos, "")?;
            let value = decode(&pair[eq + 1..], pair_pos + eq + 1, &name)?;
            let k = match name.as_str() {
                // Npgsql-style spellings some tools put in URIs.
                "ssl" if value == "true" => {
                    set(
                        &mut params,
                        Key::SslMode,
                        &name,
                        "require".into(),
                        pair_pos + eq + 1,
                    )?;
                    continue;
                }
                other => crate::libpq::key(other),
            };
            let Some(k) = k else {
                return Err(err(Some(&name), pair_pos, "unsupported key"));
            };
            set(&mut params, k, &name, value, pair_pos + eq + 1)?;
        }
    }
    params
        .check()
        .map_err(|(_, reason)| err(Some("sslmode"), start, reason))?;
    Ok(params)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn format(p: &ConnParams) -> String {
    let mut out = String::from("postgresql://");
    if let Some(user) = &p.user {
        out.push_str(&encode(user));
        if let Some(pw) = &p.password {
            out.push(':');
            out.push_str(&encode(pw.expose()));
        }
        out.push('@');
    }
    let mut query: Vec<String> = Vec::new();
    if let (None, Some(pw)) = (&p.user, &p.password) {
        query.push(format!("password={}", encode(pw.expose())));
    }

    if let Some(host) = &p.host {
        if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_ok() {
            out.push_str(&format!("[{host}]"));
        } else {
            out.push_str(&encode(host));
        }
    }
    if let Some(port) = p.port {
        out.push_str(&format!(":{port}"));
    }
    if let Some(db) = &p.database {
        out.push('/');
        out.push_str(&encode(db));
    }
    query.push(format!("sslmode={}", p.ssl_mode.as_libpq()));
    if let Some(v) = &p.ssl_root_cert {
        query.push(format!("sslrootcert={}", encode(&v.to_string_lossy())));
    }
    if let Some(v) = &p.application_name {
        query.push(format!("application_name={}", encode(v)));
    }
    if let Some(v) = p.connect_timeout {
        query.push(format!("connect_timeout={}", v.as_secs()));
    }
    out.push('?');
    out.push_str(&query.join("&"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SslMode;

    #[test]
    fn reads_userinfo_ipv6_path_and_query() {
        let p = parse(
            "postgresql://bob:p%40ss%3Aw@[::1]:5433/my%20db?sslmode=verify-ca&application_name=x",
        )
        .unwrap();
        assert_eq!(p.user.as_deref(), Some("bob"));
        assert_eq!(p.password.unwrap().expose(), "p@ss:w");
        assert_eq!(p.host.as_deref(), Some("::1"));
        assert_eq!(p.port, Some(5433));
        assert_eq!(p.database.as_deref(), Some("my db"));
        assert_eq!(p.ssl_mode, SslMode::VerifyCa);
        let p = parse("postgres://h").unwrap();
        assert_eq!((p.host.as_deref(), p.user), (Some("h"), None));
    }

    #[test]
    fn errors_name_key_and_position_never_the_value() {
        let e = parse("postgresql://u:hunter2@h:99999/db").unwrap_err();
        assert_eq!((e.key.as_deref(), e.position), (Some("port"), 25));
        assert!(!e.to_string().contains("hunter2"));
        let e = parse("postgresql://u:hun%ZZter2@h/db").unwrap_err();
        assert_eq!((e.key.as_deref(), e.position), (Some("password"), 18));
        assert!(!e.to_string().contains("hun"));
        let e = parse("postgresql://h/db?target_session_attrs=any").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("target_session_attrs"));
        let e = parse("postgresql://a,b/db").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("host"));
    }
}
