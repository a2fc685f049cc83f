//! ADO.NET connection strings (Npgsql's keys), read as
//! `DbConnectionStringBuilder` does: `key=value` pairs split by `;`, keys
//! case-insensitive with spaces ignored (`User Id` = `UserId`), values bare
//! (trimmed, ending at `;`) or in `"` or `'` quotes where a doubled quote
//! stands for one (`"say ""hi"""`) and `;` is literal.

use crate::error::{Format, ParseError};
use crate::params::{ConnParams, Key};

/// Npgsql's key names (and synonyms), compared without case or spaces.
pub(crate) fn key(name: &str) -> Option<Key> {
    let k: String = name
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    Some(match k.as_str() {
        "server" | "host" | "datasource" | "address" | "addr" | "networkaddress" => Key::Host,
        "port" => Key::Port,
        "database" | "db" | "initialcatalog" => Key::Database,
        "userid" | "username" | "uid" | "user" => Key::User,
        "password" | "pwd" | "psw" => Key::Password,
        "sslmode" => Key::SslMode,
        "trustservercertificate" => Key::TrustServerCertificate,
        "rootcertificate" => Key::SslRootCert,
        "applicationname" => Key::ApplicationName,
        "timeout" | "connecttimeout" => Key::ConnectTimeout,
        "pooling"
        | "minpoolsize"
        | "minimumpoolsize"
        | "maxpoolsize"
        | "maximumpoolsize"
        | "commandtimeout"
        | "includeerrordetail"
        | "connectionidlelifetime"
        | "connectionlifetime" => Key::Ignored,
        _ => return None,
    })
}

pub(crate) fn parse(text: &str) -> Result<ConnParams, ParseError> {
    let err =
        |key: Option<&str>, pos: usize, reason| ParseError::new(Format::AdoNet, key, pos, reason);
    let mut params = ConnParams::default();
    let mut i = 0;
    let mut any = false;
    let at = |i: usize| text[i..].chars().next();
    loop {
        while let Some(c) = at(i).filter(|c| c.is_whitespace() || *c == ';') {
            i += c.len_utf8();
        }
        if i >= text.len() {
            break;
        }
        let key_start = i;
        let Some(eq_rel) = text[i..].find(['=', ';']) else {
            return Err(err(None, key_start, "expected key=value"));
        };
        if text[i + eq_rel..].starts_with(';') {
            return Err(err(None, key_start, "expected key=value"));
        }
        let name = text[key_start..i + eq_rel].trim();
        i += eq_rel + 1;
        if text[i..].starts_with('=') {
            return Err(err(
                None,
                key_start,
                "keys containing \"=\" are not supported",
            ));
        }
        while let Some(c) = at(i).filter(|c| c.is_whitespace()) {
            i += c.len_utf8();
        }
        let value_start = i;
        let value = match at(i) {
            Some(q @ ('"' | '\'')) => {
                i += 1;
                let mut value = String::new();
                loop {
                    match at(i) {
                        None => {
                            return Err(err(
                                Some(name),
                                value_start,
                                "the quoted value has no closing quote",
                            ));
                        }
                        Some(c) if c == q => {
                            i += 1;
                            if at(i) == Some(q) {
                                value.push(q);
                                i += 1;
                            } else {
                                break;
                            }
                        }
                        Some(c) => {
                            value.push(c);
                            i += c.len_utf8();
                        }
                    }
                }
                while let Some(c) = at(i).filter(|c| c.is_whitespace()) {
                    i += c.len_utf8();
                }
                if !matches!(at(i), None | Some(';')) {
                    return Err(err(
                        Some(name),
                        i,
                        "unexpected text after the quoted value; quote the whole value",
                    ));
                }
                value
            }
            _ => {
                let end = text[i..].find(';').map_or(text.len(), |e| i + e);
                let value = text[i..end].trim().to_string();
                i = end;
                value
            }
        };
        if name.is_empty() {
            return Err(err(None, key_start, "a value has no key"));
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
        .map_err(|(_, reason)| err(Some("Trust Server Certificate"), 0, reason))?;
    Ok(params)
}

/// Quotes a value when a bare one would not read back the same.
fn quote(value: &str) -> String {
    let bare_ok = !value.is_empty()
        && !value.contains([';', '"', '\''])
        && !value.starts_with('=')
        && !value.starts_with(char::is_whitespace)
        && !value.ends_with(char::is_whitespace);
    if bare_ok {
        value.to_string()
    } else {
        format!("\"{}\"", value.replace('"', "\"\""))
    }
}

pub(crate) fn format(p: &ConnParams) -> String {
    let mut out = String::new();
    let mut add = |k: &str, v: &str| {
        out.push_str(k);
        out.push('=');
        out.push_str(&quote(v));
        out.push(';');
    };
    if let Some(v) = &p.host {
        add("Server", v);
    }
    if let Some(v) = p.port {
        add("Port", &v.to_string());
    }
    if let Some(v) = &p.database {
        add("Database", v);
    }
    if let Some(v) = &p.user {
        add("User Id", v);
    }
    if let Some(v) = &p.password {
        add("Password", v.expose());
    }
    add("Ssl Mode", p.ssl_mode.as_ado());
    if p.trust_server_certificate {
        add("Trust Server Certificate", "true");
    }
    if let Some(v) = &p.ssl_root_cert {
        add("Root Certificate", &v.to_string_lossy());
    }
    if let Some(v) = &p.application_name {
        add("Application Name", v);
    }
    if let Some(v) = p.connect_timeout {
        add("Timeout", &v.as_secs().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SslMode;

    #[test]
    fn reads_the_form_users_paste() {
        let p = parse(
            "Server=db.example.com;Port=5432;Database=sales;User Id=app@corp;Password=\"p;w\"\"d\";Ssl Mode=Require;Trust Server Certificate=true;",
        )
        .unwrap();
        assert_eq!(p.host.as_deref(), Some("db.example.com"));
        assert_eq!(p.port, Some(5432));
        assert_eq!(p.database.as_deref(), Some("sales"));
        assert_eq!(p.user.as_deref(), Some("app@corp"));
        assert_eq!(p.password.unwrap().expose(), "p;w\"d");
        assert_eq!(p.ssl_mode, SslMode::Require);
        assert!(p.trust_server_certificate);
        let p = parse("host = h ; USERNAME = 'o''neil' ; pooling=true").unwrap();
        assert_eq!(p.user.as_deref(), Some("o'neil"));
    }

    #[test]
    fn errors_name_key_and_position_never_the_value() {
        let text = "Server=h;Password=\"hunter2;Port=5";
        let e = parse(text).unwrap_err();
        assert_eq!((e.key.as_deref(), e.position), (Some("Password"), 18));
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = parse("Server=h;Ssl Mode=Sometimes").unwrap_err();
        assert_eq!((e.key.as_deref(), e.position), (Some("Ssl Mode"), 18));
        let e = parse("Server=h;hunter2;Port=5").unwrap_err();
        assert_eq!((e.key, e.position), (None, 9));
        let e = parse("Server=h;Integrated Security=true").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("Integrated Security"));
        let e = parse("Server=h;Ssl Mode=VerifyFull;Trust Server Certificate=true").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("Trust Server Certificate"));
    }
}
