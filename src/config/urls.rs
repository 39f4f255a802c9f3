//! The URLs of etcd's `--*-urls` flags: `http://host:port` or `https://host:port`, no
//! path. Checked as etcd's `types.NewURLs` checks them, with its messages.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

/// One `scheme://host:port` URL.
///
/// `Display` gives the URL as etcd prints and hashes it (Go's `url.URL.String()` for a
/// URL without a path): the scheme in lower case, then host and port as they were given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Url {
    scheme: Scheme,
    /// Without the brackets of an IPv6 literal; may be empty (`http://:2379`).
    host: String,
    port: u16,
    text: String,
}

impl Url {
    pub fn parse(input: &str) -> Result<Url, String> {
        let input = input.trim();
        let scheme_error = || format!("URL scheme must be http or https: {input}");
        let (scheme, rest) = input.split_once("://").ok_or_else(scheme_error)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "unix" | "unixs" => return Err(format!("unix sockets are not supported: {input}")),
            _ => return Err(scheme_error()),
        };
        let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_len);
        if tail.starts_with('/') {
            return Err(format!("URL must not contain a path: {input}"));
        }
        if !tail.is_empty() {
            return Err(format!("URL must not contain a query or fragment: {input}"));
        }
        if authority.contains('@') {
            return Err(format!("URL must not contain user information: {input}"));
        }
        let form_error = || format!(r#"URL address does not have the form "host:port": {input}"#);
        let (host, port) = split_host_port(authority).ok_or_else(form_error)?;
        let port = port.parse::<u16>().map_err(|_| form_error())?;
        let scheme_text = match scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        Ok(Url {
            scheme,
            host: host.to_string(),
            port,
            text: format!("{scheme_text}://{authority}"),
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn is_tls(&self) -> bool {
        self.scheme == Scheme::Https
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address a listener for this URL binds, under etcd's rule for listen
    /// URLs: the host is an IP address, `localhost` (bound as 127.0.0.1) or empty (all
    /// interfaces); names are refused because they may resolve to anything.
    pub fn bind_addr(&self) -> Result<SocketAddr, String> {
        let ip = match self.host.as_str() {
            "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            host => host
                .parse::<IpAddr>()
                .map_err(|_| format!("expected IP in URL for binding ({self})"))?,
        };
        Ok(SocketAddr::new(ip, self.port))
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Url {
    type Err = String;
    fn from_str(s: &str) -> Result<Url, String> {
        Url::parse(s)
    }
}

/// Go's `net.SplitHostPort`: `host:port` or `[v6]:port`; the port may not be missing.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') || host.contains('[') || host.contains(']') {
        return None;
    }
    Some((host, port))
}

/// A comma-separated list of URLs, as every `--*-urls` flag takes, kept in the order
/// given. An empty string is an empty list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UrlList(pub Vec<Url>);

impl UrlList {
    pub fn parse(s: &str) -> Result<UrlList, String> {
        if s.trim().is_empty() {
            return Ok(UrlList(Vec::new()));
        }
        s.split(',')
            .map(Url::parse)
            .collect::<Result<_, _>>()
            .map(UrlList)
    }
}

impl fmt::Display for UrlList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, url) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{url}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_etcd_accepts() {
        let u = Url::parse("http://localhost:2380").unwrap();
        assert_eq!(u.to_string(), "http://localhost:2380");
        assert_eq!((u.host(), u.port(), u.is_tls()), ("localhost", 2380, false));
        let u = Url::parse(" HTTPS://[::1]:2379 ").unwrap();
        assert_eq!(u.to_string(), "https://[::1]:2379");
        assert_eq!((u.host(), u.scheme()), ("::1", Scheme::Https));
        assert_eq!(Url::parse("http://:2379").unwrap().host(), "");
    }

    #[test]
    fn refuses_with_etcds_messages() {
        assert_eq!(
            Url::parse("foo").unwrap_err(),
            "URL scheme must be http or https: foo"
        );
        assert_eq!(
            Url::parse("localhost:2379").unwrap_err(),
            "URL scheme must be http or https: localhost:2379"
        );
        assert_eq!(
            Url::parse("http://127.0.0.1").unwrap_err(),
            r#"URL address does not have the form "host:port": http://127.0.0.1"#
        );
        assert_eq!(
            Url::parse("http://127.0.0.1:2379/").unwrap_err(),
            "URL must not contain a path: http://127.0.0.1:2379/"
        );
        for bad in [
            "http://127.0.0.1:99999",
            "http://127.0.0.1:port",
            "http://::1:2379",
            "http://[::1]2379",
            "http://a@b:1",
            "http://b:1?x",
            "unix://sock",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bind_addresses() {
        let bind = |s: &str| Url::parse(s).unwrap().bind_addr();
        assert_eq!(
            bind("http://localhost:2379").unwrap().to_string(),
            "127.0.0.1:2379"
        );
        assert_eq!(bind("http://0.0.0.0:1").unwrap().to_string(), "0.0.0.0:1");
        assert_eq!(bind("http://:1").unwrap().to_string(), "0.0.0.0:1");
        assert_eq!(bind("https://[::1]:7").unwrap().to_string(), "[::1]:7");
        assert_eq!(
            bind("http://example.com:2379").unwrap_err(),
            "expected IP in URL for binding (http://example.com:2379)"
        );
    }

    #[test]
    fn lists() {
        let l = UrlList::parse("http://a:1,https://b:2").unwrap();
        assert_eq!(l.0.len(), 2);
        assert_eq!(l.to_string(), "http://a:1,https://b:2");
        assert_eq!(UrlList::parse("").unwrap().0, vec![]);
        assert!(UrlList::parse("http://a:1,").is_err());
    }
}
