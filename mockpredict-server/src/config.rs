//! [`ServerConfig`]: the HTTP layer's limits and policies (the queue's own settings
//! live in core's `QueueConfig`).

use std::fmt;
use std::time::Duration;

use crate::access::{AccessLog, AccessLogSink};

/// How the server handles HTTP: body and wait limits, auth, CORS, connections and
/// shutdown. Build it from [`Default`] with the setters.
///
/// ```
/// use std::time::Duration;
/// use mockpredict_server::{Cors, ServerConfig};
///
/// let config = ServerConfig::default()
///     .sync_timeout(Duration::from_secs(30))
///     .api_token(Some("s3cret".into()))
///     .cors(Cors::Origins(vec!["https://app.example".into()]));
/// assert_eq!(config.max_body, 1024 * 1024);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes; larger ones get 413 without being
    /// read into memory. Default 1 MiB.
    pub max_body: usize,
    /// How long a sync prediction may hold its request before the server answers 202
    /// with the ID instead (a client's `Prefer: wait=N` may ask for less, never more).
    /// Default 60 s.
    pub sync_timeout: Duration,
    /// The longest `?wait=` a long-poll may ask for; longer waits are cut to it.
    /// Default 60 s.
    pub max_wait: Duration,
    /// When set, every route except `/`, `/healthz` and `/readyz` requires
    /// `Authorization: Bearer <token>`.
    pub api_token: Option<ApiToken>,
    /// Which browser origins may call the API.
    pub cors: Cors,
    /// How long a new connection may take to get its first request's headers across:
    /// one that has not done so this long after it connected is closed (slowloris);
    /// and a request body that has not fully arrived this long after its headers
    /// gets 408. Default 10 s.
    pub header_read_timeout: Duration,
    /// How long a connection may go with no request in flight after a request before
    /// it is closed: HTTP/1.1 keep-alive and HTTP/2 alike (HTTP/2 gets a GOAWAY
    /// first). A next request's head that stalls counts as idle time. Keep it above
    /// the idle timeout of any proxy or load balancer in front (AWS ALB 60 s, nginx's
    /// upstream `keepalive_timeout` 60 s; Envoy's upstream idle timeout is 1 h: lower
    /// that one), or the proxy may send a request on a connection this server is
    /// closing, and answer its client 502. Zero closes a connection after each
    /// answer. Default 75 s.
    pub keep_alive_timeout: Duration,
    /// Most connections served at once; further ones wait in the listen backlog.
    /// Default 1024.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests and predictions before
    /// canceling what is left. Default 30 s.
    pub shutdown_timeout: Duration,
    /// On shutdown, how long the server keeps serving (and accepting) with `/readyz`
    /// answering 503 before its listener closes and the drain proper begins, so that
    /// load balancers take it out of rotation first (as a Kubernetes `preStop` sleep
    /// or Envoy's drain time would). Default 0: the listener closes at once.
    pub drain_delay: Duration,
    /// How often an idle event stream sends a keep-alive comment. Default 15 s.
    pub sse_keep_alive: Duration,
    /// Whether each request is logged (`info`, target `mockpredict_server::access`:
    /// method, route, status, duration, prediction ID). Default on; off skips the
    /// event entirely, for load tests (`/metrics` still counts every request).
    pub access_log: bool,
    /// Where access records go when [`access_log`](Self::access_log) is on. Default
    /// [`TracingAccessLog`](crate::TracingAccessLog): a `tracing` event.
    pub access_log_sink: AccessLogSink,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body: 1024 * 1024,
            sync_timeout: Duration::from_secs(60),
            max_wait: Duration::from_secs(60),
            api_token: None,
            cors: Cors::Any,
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(75),
            max_connections: 1024,
            shutdown_timeout: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            sse_keep_alive: Duration::from_secs(15),
            access_log: true,
            access_log_sink: AccessLogSink::default(),
        }
    }
}

impl ServerConfig {
    /// Sets [`max_body`](Self::max_body).
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Sets [`sync_timeout`](Self::sync_timeout).
    #[must_use]
    pub fn sync_timeout(mut self, d: Duration) -> Self {
        self.sync_timeout = d;
        self
    }

    /// Sets [`max_wait`](Self::max_wait).
    #[must_use]
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = d;
        self
    }

    /// Sets [`api_token`](Self::api_token); `None` or an empty token turns auth off.
    #[must_use]
    pub fn api_token(mut self, token: Option<String>) -> Self {
        self.api_token = token.filter(|t| !t.is_empty()).map(ApiToken);
        self
    }

    /// Sets [`cors`](Self::cors).
    #[must_use]
    pub fn cors(mut self, cors: Cors) -> Self {
        self.cors = cors;
        self
    }

    /// Sets [`header_read_timeout`](Self::header_read_timeout).
    #[must_use]
    pub fn header_read_timeout(mut self, d: Duration) -> Self {
        self.header_read_timeout = d;
        self
    }

    /// Sets [`keep_alive_timeout`](Self::keep_alive_timeout).
    #[must_use]
    pub fn keep_alive_timeout(mut self, d: Duration) -> Self {
        self.keep_alive_timeout = d;
        self
    }

    /// Sets [`max_connections`](Self::max_connections) (at least 1).
    #[must_use]
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Sets [`shutdown_timeout`](Self::shutdown_timeout).
    #[must_use]
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// Sets [`drain_delay`](Self::drain_delay).
    #[must_use]
    pub fn drain_delay(mut self, d: Duration) -> Self {
        self.drain_delay = d;
        self
    }

    /// Sets [`access_log`](Self::access_log).
    #[must_use]
    pub fn access_log(mut self, on: bool) -> Self {
        self.access_log = on;
        self
    }

    /// Sets [`access_log_sink`](Self::access_log_sink): where access records go
    /// instead of a `tracing` event.
    #[must_use]
    pub fn access_log_sink(mut self, log: impl AccessLog) -> Self {
        self.access_log_sink = AccessLogSink::new(log);
        self
    }

    /// Sets [`sse_keep_alive`](Self::sse_keep_alive).
    #[must_use]
    pub fn sse_keep_alive(mut self, d: Duration) -> Self {
        self.sse_keep_alive = d.max(Duration::from_millis(10));
        self
    }
}

/// The longest time span the server hands to timers: longer configured or requested
/// waits (`--max-wait 1000000y`, `Duration::MAX`) mean "forever" and are cut to it,
/// because `Instant + Duration` panics when the sum does not fit.
pub(crate) const FOREVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// The instant `d` from now, with `d` cut to [`FOREVER`].
pub(crate) fn deadline_in(d: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + d.min(FOREVER)
}

/// A bearer token. Its `Debug` output is redacted so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// The token's bytes, for the constant-time comparison.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// Which browser origins may call the API (Cross-Origin Resource Sharing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cors {
    /// Any origin (`Access-Control-Allow-Origin: *`), as the original service allowed.
    Any,
    /// Only these origins (e.g. `https://app.example`), echoed back when they match.
    Origins(Vec<String>),
    /// No CORS headers at all: browsers refuse cross-origin calls.
    Off,
}

impl Cors {
    /// The first listed origin that is not one, if any: such an entry can never match
    /// what a browser sends in `Origin`, and is most likely a typo. An origin is
    /// `scheme://host` with an optional `:port` (1–65535) and nothing after it, in
    /// ASCII (a browser sends an international host in its punycode form), or `null`
    /// (what sandboxed frames and `file:` pages send; allow it only knowingly).
    pub fn invalid_origin(&self) -> Option<&str> {
        let Cors::Origins(list) = self else {
            return None;
        };
        list.iter().map(String::as_str).find(|o| !is_origin(o))
    }
}

/// See [`Cors::invalid_origin`].
fn is_origin(o: &str) -> bool {
    if o == "null" {
        return true;
    }
    let Some((scheme, authority)) = o.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok
        || !authority.is_ascii()
        || authority.contains(|c: char| c.is_ascii_whitespace() || "/?#@".contains(c))
    {
        return false;
    }
    // An IPv6 literal is bracketed: its colons are not a port's.
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, rest)) if !addr.is_empty() => match rest {
                "" => (addr, None),
                _ => match rest.strip_prefix(':') {
                    Some(port) => (addr, Some(port)),
                    None => return false,
                },
            },
            _ => return false,
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    !host.is_empty()
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0) && !p.starts_with('+'))
}

/// How a browser serializes an origin: scheme and host in lowercase, and no port when
/// it is the scheme's default. Matching is then a byte comparison.
fn normalize_origin(o: &str) -> String {
    let o = o.to_ascii_lowercase();
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        if o.starts_with(scheme) && o.ends_with(port) {
            return o[..o.len() - port.len()].to_owned();
        }
    }
    o
}

impl std::str::FromStr for Cors {
    type Err = std::convert::Infallible;

    /// `*` is [`Cors::Any`], `off` (or `none`, or empty) is [`Cors::Off`], anything
    /// else a comma-separated list of origins, written as browsers send them (see
    /// [`Cors::invalid_origin`]): trailing slashes dropped, scheme and host in
    /// lowercase, a default port (`:443` for https, `:80` for http) left out.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Ok(match s {
            "*" => Cors::Any,
            "" | "off" | "none" => Cors::Off,
            list => Cors::Origins(
                list.split(',')
                    .map(|o| normalize_origin(o.trim().trim_end_matches('/')))
                    .filter(|o| !o.is_empty())
                    .collect(),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_parses_any_off_and_lists() {
        assert_eq!("*".parse::<Cors>(), Ok(Cors::Any));
        assert_eq!("off".parse::<Cors>(), Ok(Cors::Off));
        assert_eq!(
            "https://a.example/, http://b.example:3000".parse::<Cors>(),
            Ok(Cors::Origins(vec![
                "https://a.example".into(),
                "http://b.example:3000".into()
            ]))
        );
    }

    /// Listed origins are kept as browsers send them, so that an exact comparison
    /// matches.
    #[test]
    fn origins_are_kept_as_browsers_send_them() {
        assert_eq!(
            "HTTPS://App.Example:443/, http://a.example:80, http://a.example:8080".parse::<Cors>(),
            Ok(Cors::Origins(vec![
                "https://app.example".into(),
                "http://a.example".into(),
                "http://a.example:8080".into(),
            ]))
        );
    }

    #[test]
    fn origins_that_cannot_match_are_found() {
        for good in [
            "*",
            "off",
            "https://a.example/, http://b.example:3000",
            "http://localhost:3000",
            "app+x://[::1]:8080",
            "http://[::1]",
            "https://xn--bcher-kva.example",
            "null",
        ] {
            assert_eq!(
                good.parse::<Cors>().expect("parses").invalid_origin(),
                None,
                "{good}"
            );
        }
        for (list, bad) in [
            ("nonsense", "nonsense"),
            ("https://a.example, a.example", "a.example"),
            ("https://a.example/path", "https://a.example/path"),
            // The list drops trailing slashes, so this one reads as `https:`.
            ("https://", "https:"),
            ("1http://a.example", "1http://a.example"),
            ("https://a.example?x=1", "https://a.example?x=1"),
            ("https://bücher.example", "https://bücher.example"),
            ("https://a.example:", "https://a.example:"),
            ("https://a.example:x", "https://a.example:x"),
            ("https://a.example:0", "https://a.example:0"),
            ("https://a.example:+1", "https://a.example:+1"),
            ("https://a.example:70000", "https://a.example:70000"),
            ("http://[::1", "http://[::1"),
            ("http://[::1]x", "http://[::1]x"),
            ("*,https://a.example", "*"),
        ] {
            let cors: Cors = list.parse().expect("parses");
            assert_eq!(cors.invalid_origin(), Some(bad), "{list}");
        }
    }

    #[test]
    fn token_is_redacted_and_empty_means_off() {
        let c = ServerConfig::default().api_token(Some("hunter2".into()));
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(
            ServerConfig::default()
                .api_token(Some(String::new()))
                .api_token
                .is_none()
        );
    }
}
