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
    /// Every route, in table order; `Route as usize` indexes it (the metrics keep a
    /// counter per route in an array).
    pub(crate) const ALL: [Route; 9] = [
        Route::Root,
        Route::Healthz,
        Route::Readyz,
        Route::Metrics,
        Route::OpenApi,
        Route::Predict,
        Route::Prediction,
        Route::Cancel,
        Route::Events,
    ];

    /// The path template, used as the `route` label in metrics and logs (bounded
    /// cardinality: never the raw path). A `match`, not a table search: it runs on
    /// every request; a test checks it against [`TABLE`].
    pub(crate) fn template(self) -> &'static str {
        match self {
            Route::Root => "/",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Metrics => "/metrics",
            Route::OpenApi => "/openapi.json",
            Route::Predict => PREDICT,
            Route::Prediction => "/predictions/predict/{id}",
            Route::Cancel => "/predictions/predict/{id}/cancel",
            Route::Events => "/predictions/predict/{id}/events",
        }
    }

    /// The one method the route answers (`HEAD` aside, which goes wherever `GET` does).
    fn method(self) -> Method {
        match self {
            Route::Predict | Route::Cancel => Method::POST,
            Route::Root
            | Route::Healthz
            | Route::Readyz
            | Route::Metrics
            | Route::OpenApi
            | Route::Prediction
            | Route::Events => Method::GET,
        }
    }

    /// The `Allow` value of the route's path (for 405 and `OPTIONS`).
    pub(crate) fn allow(self) -> &'static str {
        if self.method() == Method::GET {
            "GET, HEAD, OPTIONS"
        } else {
            "POST, OPTIONS"
        }
    }

    /// Whether a configured bearer token is required. Liveness, readiness and the
    /// original's `GET /` stay open so probes need no secret.
    pub(crate) fn requires_auth(self) -> bool {
        !matches!(self, Route::Root | Route::Healthz | Route::Readyz)
    }
}

const PREDICT: &str = "/predictions/predict";

/// The `route` label (metrics, access log) of a request: its template, or
/// `"unmatched"` when no route matched.
pub(crate) fn label(route: Option<Route>) -> &'static str {
    route.map_or("unmatched", Route::template)
}

/// What a request path and method resolve to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resolved<'p> {
    /// A route, with the `{id}` segment when its template has one.
    Found(Route, Option<&'p str>),
    /// The path matches this route's template, with other methods (comma-separated,
    /// for `Allow`).
    WrongMethod(Route, &'static str),
    /// No template matches the path.
    NotFound,
}

/// The route whose template `path` matches (each template has one method), with the
/// `{id}` segment. Hand-written rather than a walk over [`TABLE`], because it runs on
/// every request; a test checks that both agree.
fn match_path(path: &str) -> Option<(Route, Option<&str>)> {
    let route = match path {
        "/" => Route::Root,
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/metrics" => Route::Metrics,
        "/openapi.json" => Route::OpenApi,
        PREDICT => Route::Predict,
        _ => {
            let rest = path.strip_prefix(PREDICT)?.strip_prefix('/')?;
            let (id, tail) = match rest.split_once('/') {
                Some((id, tail)) => (id, Some(tail)),
                None => (rest, None),
            };
            if id.is_empty() {
                return None;
            }
            let route = match tail {
                None => Route::Prediction,
                Some("cancel") => Route::Cancel,
                Some("events") => Route::Events,
                Some(_) => return None,
            };
            return Some((route, Some(id)));
        }
    };
    Some((route, None))
}

/// Resolves `method path` against the table. `HEAD` is answered wherever `GET` is
/// (RFC 9110 §9.3.2): the handler runs as for `GET` and hyper sends no body.
pub(crate) fn resolve<'p>(method: &Method, path: &'p str) -> Resolved<'p> {
    let Some((route, id)) = match_path(path) else {
        return Resolved::NotFound;
    };
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    if *method == route.method() {
        Resolved::Found(route, id)
    } else {
        Resolved::WrongMethod(route, route.allow())
    }
}

/// The route a path matches and the methods it allows (for `OPTIONS` and
/// preflight), or `None` if no template matches.
pub(crate) fn allowed_methods(path: &str) -> Option<(Route, &'static str)> {
    match_path(path).map(|(route, _)| (route, route.allow()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generic matcher the table defines: `{id}` matches one non-empty segment.
    fn table_matches<'p>(template: &str, path: &'p str) -> Option<Option<&'p str>> {
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

    /// What the table says `path` allows, computed the slow, general way.
    fn table_allow(path: &str) -> Option<(&'static str, String)> {
        let matching: Vec<(&'static str, &'static str)> = TABLE
            .iter()
            .filter(|(_, _, t)| table_matches(t, path).is_some())
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
            Resolved::WrongMethod(Route::Predict, "POST, OPTIONS")
        );
        assert_eq!(
            resolve(&Method::GET, "/predictions/predict/"),
            Resolved::NotFound
        );
        assert_eq!(resolve(&Method::GET, "/nope"), Resolved::NotFound);
        assert_eq!(
            allowed_methods("/predictions/predict/x/events"),
            Some((Route::Events, "GET, HEAD, OPTIONS"))
        );
    }

    #[test]
    fn templates_with_an_id_resolve_with_one() {
        // `App::dispatch` relies on it: an `{id}` route always comes with its ID.
        for route in Route::ALL {
            let path = route.template().replace("{id}", "abc");
            assert_eq!(
                resolve(&route.method(), &path),
                Resolved::Found(route, route.template().contains("{id}").then_some("abc")),
                "{path}"
            );
        }
    }

    #[test]
    fn head_is_answered_wherever_get_is() {
        assert_eq!(
            resolve(&Method::HEAD, "/healthz"),
            Resolved::Found(Route::Healthz, None)
        );
        assert_eq!(
            resolve(&Method::HEAD, "/predictions/predict"),
            Resolved::WrongMethod(Route::Predict, "POST, OPTIONS")
        );
    }

    #[test]
    fn the_fast_matcher_agrees_with_the_table() {
        assert_eq!(Route::ALL.len(), TABLE.len());
        for (i, &(route, method, template)) in TABLE.iter().enumerate() {
            assert_eq!(Route::ALL[i], route, "ALL is in table order");
            assert_eq!(route as usize, i, "{route:?} indexes its table row");
            assert_eq!(route.template(), template);
            assert_eq!(route.method().as_str(), method);
        }
        let paths = [
            "",
            "/",
            "//",
            "/healthz",
            "/healthz/",
            "/readyz",
            "/metrics",
            "/openapi.json",
            "/openapi",
            "/predictions",
            "/predictions/",
            "/predictions/predict",
            "/predictions/predict/",
            "/predictions/predictx",
            "/predictions/predict/abc",
            "/predictions/predict/abc/",
            "/predictions/predict//cancel",
            "/predictions/predict/abc/cancel",
            "/predictions/predict/abc/cancel/",
            "/predictions/predict/abc/events",
            "/predictions/predict/abc/other",
            "/predictions/predict/cancel",
            "/predictions/predict/a/b/c",
            "/x/predictions/predict",
        ];
        for path in paths {
            let expected = TABLE
                .iter()
                .find_map(|&(route, _, t)| table_matches(t, path).map(|id| (route, id)));
            assert_eq!(match_path(path), expected, "{path:?}");
            assert_eq!(
                allowed_methods(path).map(|(r, allow)| (r.template(), allow.to_owned())),
                table_allow(path),
                "{path:?}"
            );
            for method in [Method::GET, Method::HEAD, Method::POST, Method::DELETE] {
                let slow = TABLE.iter().find_map(|&(route, m, t)| {
                    let m_ok = m == method.as_str() || (method == Method::HEAD && m == "GET");
                    table_matches(t, path)
                        .filter(|_| m_ok)
                        .map(|id| Resolved::Found(route, id))
                });
                let expected = slow.unwrap_or_else(|| match allowed_methods(path) {
                    Some((r, allow)) => Resolved::WrongMethod(r, allow),
                    None => Resolved::NotFound,
                });
                assert_eq!(resolve(&method, path), expected, "{method} {path:?}");
            }
        }
    }
}
