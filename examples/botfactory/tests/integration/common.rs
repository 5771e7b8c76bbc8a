use std::time::Duration;

use example_testkit::{App, Gatehouse, Login, ScratchDb, Setup};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// BotFactory on a scratch database, trusting `gatehouse`.
pub struct Ctx {
    pub gatehouse: Gatehouse,
    pub app: App,
    pub db: ScratchDb,
    pub http: reqwest::Client,
}

/// An answer: status, headers and JSON body (`Null` when empty).
pub struct Res {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Res {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Assert a problem+json answer with `status` and `code`.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.header("content-type"), "application/problem+json");
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string() && self.body["detail"].is_string());
        assert!(
            self.body["type"]
                .as_str()
                .unwrap()
                .ends_with(&format!(":problem:{code}")),
            "{}",
            self.body
        );
        &self.body
    }

    /// The `field`s of a 422's `errors`, with their codes.
    pub fn field_errors(&self) -> Vec<(String, String)> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["field"].as_str().unwrap().to_owned(),
                            e["code"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Ctx {
    pub async fn new() -> Self {
        Self::with(Gatehouse::fake(Setup::default()).await, &[]).await
    }

    pub async fn with(gatehouse: Gatehouse, extra: &[(&str, String)]) -> Self {
        let db = ScratchDb::new("botfactory").await;
        let mut env = gatehouse.app_env();
        env.push(("DATABASE_URL", db.url.clone()));
        env.push(("DB_POOL_SIZE", "4".into()));
        env.extend(extra.iter().cloned());
        let app = App::spawn("botfactory", &env).await;
        Self {
            gatehouse,
            app,
            db,
            http: reqwest::Client::new(),
        }
    }

    pub async fn client(&self) -> Login {
        self.gatehouse.login_new_user().await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Res {
        let mut req = self.http.request(method, format!("{}{path}", self.app.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Res {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Res {
        self.send(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Res {
        self.send(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Res {
        self.send(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Res {
        self.send(Method::DELETE, path, Some(token), None).await
    }

    /// Create a bot; assert 201 and return it.
    pub async fn create_bot(&self, token: &str, name: &str) -> Value {
        let res = self
            .post("/bots", token, serde_json::json!({"name": name}))
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
        res.body
    }

    /// Rows in the bots table, by owner.
    pub async fn bot_rows(&self) -> Vec<(uuid::Uuid, String)> {
        use diesel::QueryableByName;
        use diesel_async::RunQueryDsl;
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            owner_id: uuid::Uuid,
            #[diesel(sql_type = diesel::sql_types::Text)]
            name: String,
        }
        let rows: Vec<Row> =
            diesel::sql_query("SELECT owner_id, name FROM bots ORDER BY created_at, id")
                .load(&mut self.db.conn().await)
                .await
                .unwrap();
        rows.into_iter().map(|r| (r.owner_id, r.name)).collect()
    }
}

/// Poll until `f` holds (revocations arrive asynchronously).
pub async fn within<F, Fut>(limit: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    gatehouse_testkit::eventually(limit, what, || {
        let fut = f();
        async move { fut.await.then_some(()) }
    })
    .await;
    start.elapsed()
}
