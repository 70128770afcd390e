//! The route table: every `(method, path template)` the server answers, and the
//! matcher that resolves a request path against it. The OpenAPI document is checked
//! against [`routes`] by a test, so the two cannot drift apart.

use http::Method;

/// Which handler a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Root,
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    Predict,
    Prediction,
    Cancel,
    Events,
}

/// `(route, method, template)`; `{id}` matches one path segment.
const TABLE: &[(Route, &str, &str)] = &[
    (Route::Root, "GET", "/"),
    (Route::Healthz, "GET", "/healthz"),
    (Route::Readyz, "GET", "/readyz"),
    (Route::Metrics, "GET", "/metrics"),
    (Route::OpenApi, "GET", "/openapi.json"),
    (Route::Predict, "POST", "/predictions/predict"),
    (Route::Prediction, "GET", "/predictions/predict/{id}"),
    (Route::Cancel, "POST", "/predictions/predict/{id}/cancel"),
    (Route::Events, "GET", "/predictions/predict/{id}/events"),
];

/// Every `(method, path template)` the server routes, e.g.
/// `("GET", "/predictions/predict/{id}")`. `OPTIONS` (CORS preflight) is answered on
/// every path listed here as well.
pub fn routes() -> impl Iterator<Item = (&'static str, &'static str)> {
    TABLE
        .iter()
        .map(|&(_, method, template)| (method, template))
}

impl Route {
    /// The path template, used as the `route` label in metrics and logs (bounded
    /// cardinality: never the raw path).
    pub(crate) fn template(self) -> &'static str {
        TABLE
            .iter()
            .find(|(r, _, _)| *r == self)
            .map_or("unknown", |(_, _, t)| t)
    }

    /// Whether a configured bearer token is required. Liveness, readiness and the
    /// original's `GET /` stay open so probes need no secret.
    pub(crate) fn requires_auth(self) -> bool {
        !matches!(self, Route::Root | Route::Healthz | Route::Readyz)
    }
}

/// What a request path and method resolve to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resolved<'p> {
    /// A route, with the `{id}` segment when its template has one.
    Found(Route, Option<&'p str>),
    /// The path matches this template, with other methods (comma-separated, for
    /// `Allow`).
    WrongMethod(&'static str, String),
    /// No template matches the path.
    NotFound,
}

fn matches<'p>(template: &str, path: &'p str) -> Option<Option<&'p str>> {
    let mut id = None;
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(id),
            (Some("{id}"), Some(seg)) if !seg.is_empty() => id = Some(seg),
            (Some(a), Some(b)) if a == b => {}
            _ => return None,
        }
    }
}

/// Resolves `method path` against the table. `HEAD` is answered wherever `GET` is
/// (RFC 9110 §9.3.2): the handler runs as for `GET` and hyper sends no body.
pub(crate) fn resolve<'p>(method: &Method, path: &'p str) -> Resolved<'p> {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    for &(route, m, template) in TABLE {
        if let Some(id) = matches(template, path) {
            if m == method.as_str() {
                return Resolved::Found(route, id);
            }
        }
    }
    match allowed_methods(path) {
        Some((template, allow)) => Resolved::WrongMethod(template, allow),
        None => Resolved::NotFound,
    }
}

/// The template a path matches and the methods it allows (for `OPTIONS` and
/// preflight), or `None` if no template matches.
pub(crate) fn allowed_methods(path: &str) -> Option<(&'static str, String)> {
    let matching: Vec<(&'static str, &'static str)> = TABLE
        .iter()
        .filter(|(_, _, t)| matches(t, path).is_some())
        .map(|&(_, m, t)| (t, m))
        .collect();
    let template = matching.first()?.0;
    let mut allowed: Vec<&str> = matching.iter().map(|&(_, m)| m).collect();
    if allowed.contains(&"GET") {
        allowed.push("HEAD");
    }
    allowed.push("OPTIONS");
    Some((template, allowed.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_templates_ids_and_wrong_methods() {
        assert_eq!(
            resolve(&Method::GET, "/"),
            Resolved::Found(Route::Root, None)
        );
        assert_eq!(
            resolve(&Method::GET, "/predictions/predict/abc"),
            Resolved::Found(Route::Prediction, Some("abc"))
        );
        assert_eq!(
            resolve(&Method::POST, "/predictions/predict/abc/cancel"),
            Resolved::Found(Route::Cancel, Some("abc"))
        );
        assert_eq!(
            resolve(&Method::GET, "/predictions/predict"),
            Resolved::WrongMethod("/predictions/predict", "POST, OPTIONS".into())
        );
        assert_eq!(
            resolve(&Method::GET, "/predictions/predict/"),
            Resolved::NotFound
        );
        assert_eq!(resolve(&Method::GET, "/nope"), Resolved::NotFound);
        assert_eq!(
            allowed_methods("/predictions/predict/x/events"),
            Some((
                "/predictions/predict/{id}/events",
                "GET, HEAD, OPTIONS".to_owned()
            ))
        );
    }

    #[test]
    fn head_is_answered_wherever_get_is() {
        assert_eq!(
            resolve(&Method::HEAD, "/healthz"),
            Resolved::Found(Route::Healthz, None)
        );
        assert_eq!(
            resolve(&Method::HEAD, "/predictions/predict"),
            Resolved::WrongMethod("/predictions/predict", "POST, OPTIONS".into())
        );
    }
}
