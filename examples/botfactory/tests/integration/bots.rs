//! Bots: create, list, read, change, delete; ownership and validation.

use serde_json::json;

use crate::common::Ctx;

#[tokio::test(flavor = "multi_thread")]
async fn each_client_sees_and_touches_only_their_own_bots() {
    let ctx = Ctx::new().await;
    let alice = ctx.client().await;
    let bob = ctx.client().await;
    for name in ["Weather", "News", "Quotes"] {
        ctx.create_bot(&alice.access_token, name).await;
    }
    let bobs = ctx.create_bot(&bob.access_token, "Weather").await;
    let bob_bot = format!("/bots/{}", bobs["id"].as_str().unwrap());

    let mine = ctx.get("/bots/me", &alice.access_token).await;
    assert_eq!(mine.status, 200);
    assert_eq!(mine.body["total"], 3);
    let names: Vec<&str> = mine.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Quotes", "News", "Weather"], "newest first");
    for b in mine.body["items"].as_array().unwrap() {
        assert_eq!(b["owner_id"], alice.user_id.to_string());
    }
    let theirs = ctx.get("/bots/me", &bob.access_token).await;
    assert_eq!(theirs.body["total"], 1);
    assert_eq!(theirs.body["items"][0]["id"], bobs["id"]);

    // Another client's bot answers exactly like a missing one.
    let missing = format!("/bots/{}", uuid::Uuid::now_v7());
    for path in [&bob_bot, &missing] {
        let res = ctx.get(path, &alice.access_token).await;
        res.problem(404, "not_found");
        let res = ctx
            .patch(path, &alice.access_token, json!({"name": "Mine now"}))
            .await;
        res.problem(404, "not_found");
        ctx.delete(path, &alice.access_token)
            .await
            .problem(404, "not_found");
    }
    let foreign = ctx.get(&bob_bot, &alice.access_token).await.body;
    let absent = ctx.get(&missing, &alice.access_token).await.body;
    assert_eq!(foreign["detail"], absent["detail"], "no way to probe ids");

    // Bob's bot is untouched.
    let res = ctx.get(&bob_bot, &bob.access_token).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["name"], "Weather");
    let rows = ctx.bot_rows().await;
    assert_eq!(rows.len(), 4);
    assert_eq!(rows.iter().filter(|(o, _)| *o == alice.user_id).count(), 3);
    assert_eq!(rows.iter().filter(|(o, _)| *o == bob.user_id).count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_answers_201_with_location_and_the_bot() {
    let ctx = Ctx::new().await;
    let alice = ctx.client().await;
    let res = ctx
        .post(
            "/bots",
            &alice.access_token,
            json!({"name": "  Weather bot  ", "description": "Says if it rains.\nTwice a day."}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let id = res.body["id"].as_str().unwrap();
    assert_eq!(res.header("location"), format!("/bots/{id}"));
    assert_eq!(res.body["name"], "Weather bot", "trimmed");
    assert_eq!(res.body["description"], "Says if it rains.\nTwice a day.");
    assert_eq!(res.body["owner_id"], alice.user_id.to_string());
    let created = res.body["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.len() == 27, "{created}");
    assert_eq!(res.body["created_at"], res.body["updated_at"]);

    let again = ctx.get(res.header("location"), &alice.access_token).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, res.body);

    // No description is null, a blank one too.
    let res = ctx
        .post(
            "/bots",
            &alice.access_token,
            json!({"name": "Plain", "description": "  "}),
        )
        .await;
    assert_eq!(res.status, 201);
    assert!(res.body["description"].is_null());

    let me = ctx.get("/clients/me", &alice.access_token).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["id"], alice.user_id.to_string());
    assert_eq!(me.body["session_id"], alice.session_id.to_string());
    assert_eq!(me.body["role"], "user");
    assert_eq!(me.body["bot_count"], 2);
    assert!(me.body["token_expires_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread")]
async fn names_are_unique_per_owner_ignoring_case() {
    let ctx = Ctx::new().await;
    let alice = ctx.client().await;
    let bob = ctx.client().await;
    ctx.create_bot(&alice.access_token, "Weather").await;
    let res = ctx
        .post("/bots", &alice.access_token, json!({"name": "weather"}))
        .await;
    res.problem(409, "name_taken");
    // Another client may use the name.
    ctx.create_bot(&bob.access_token, "Weather").await;
    // Renaming onto a taken name is a conflict too.
    let news = ctx.create_bot(&alice.access_token, "News").await;
    let res = ctx
        .patch(
            &format!("/bots/{}", news["id"].as_str().unwrap()),
            &alice.access_token,
            json!({"name": "WEATHER"}),
        )
        .await;
    res.problem(409, "name_taken");
    assert_eq!(ctx.bot_rows().await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bodies_are_problems_listing_every_field() {
    let ctx = Ctx::new().await;
    let alice = ctx.client().await;
    let t = &alice.access_token;
    let cases = [
        (json!({}), vec![("name", "required")]),
        (json!({"name": ""}), vec![("name", "required")]),
        (json!({"name": "   "}), vec![("name", "required")]),
        (json!({"name": "x".repeat(65)}), vec![("name", "too_long")]),
        (
            json!({"name": "a\u{0}b"}),
            vec![("name", "invalid_characters")],
        ),
        (
            json!({"name": "two\nlines"}),
            vec![("name", "invalid_characters")],
        ),
        (json!({"name": 5}), vec![("name", "invalid_type")]),
        (
            json!({"name": "ok", "owner_id": alice.user_id}),
            vec![("owner_id", "unknown_field")],
        ),
        (
            json!({"name": "ok", "id": "x"}),
            vec![("id", "unknown_field")],
        ),
        (
            json!({"name": "", "description": "d".repeat(1001)}),
            vec![("name", "required"), ("description", "too_long")],
        ),
        (
            json!({"name": "ok", "description": "nul\u{0}"}),
            vec![("description", "invalid_characters")],
        ),
        (json!("just a string"), vec![("", "invalid_type")]),
    ];
    for (body, want) in cases {
        let res = ctx.post("/bots", t, body.clone()).await;
        res.problem(422, "validation_failed");
        let want: Vec<(String, String)> = want
            .into_iter()
            .map(|(f, c)| (f.to_owned(), c.to_owned()))
            .collect();
        assert_eq!(res.field_errors(), want, "{body}");
    }
    // 64 characters of 2 bytes each are fine: characters, not bytes.
    ctx.create_bot(t, &"é".repeat(64)).await;

    // Not JSON, wrong content type, broken JSON.
    let res = ctx
        .http
        .post(format!("{}/bots", ctx.app.url))
        .bearer_auth(t)
        .body("name=x")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = ctx
        .http
        .post(format!("{}/bots", ctx.app.url))
        .bearer_auth(t)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["code"], "malformed_json");

    // PATCH: null name, unknown field, bad id.
    let bot = ctx.create_bot(t, "Patchable").await;
    let path = format!("/bots/{}", bot["id"].as_str().unwrap());
    let res = ctx.patch(&path, t, json!({"name": null})).await;
    res.problem(422, "validation_failed");
    assert_eq!(
        res.field_errors(),
        [("name".to_owned(), "required".to_owned())]
    );
    let res = ctx.patch(&path, t, json!({"owner_id": bob_id()})).await;
    assert_eq!(
        res.field_errors(),
        [("owner_id".to_owned(), "unknown_field".to_owned())]
    );
    let res = ctx.get("/bots/not-a-uuid", t).await;
    res.problem(422, "validation_failed");
    assert_eq!(
        res.field_errors(),
        [("id".to_owned(), "invalid_uuid".to_owned())]
    );

    // Nothing invalid was stored.
    let names: Vec<String> = ctx.bot_rows().await.into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["é".repeat(64), "Patchable".to_owned()]);
}

fn bob_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn update_and_delete_own_bots() {
    let ctx = Ctx::new().await;
    let alice = ctx.client().await;
    let t = &alice.access_token;
    let res = ctx
        .post("/bots", t, json!({"name": "Old", "description": "first"}))
        .await;
    let path = res.header("location").to_owned();
    let created = res.body;

    // Absent fields stay; updated_at moves.
    let res = ctx.patch(&path, t, json!({"name": "New"})).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["name"], "New");
    assert_eq!(res.body["description"], "first");
    assert_eq!(res.body["created_at"], created["created_at"]);
    assert!(res.body["updated_at"].as_str() > created["updated_at"].as_str());
    // null clears the description.
    let res = ctx.patch(&path, t, json!({"description": null})).await;
    assert_eq!(res.status, 200);
    assert!(res.body["description"].is_null());
    assert_eq!(res.body["name"], "New");
    // An empty patch changes nothing.
    let before = res.body;
    let res = ctx.patch(&path, t, json!({})).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body, before);

    let res = ctx.delete(&path, t).await;
    assert_eq!(res.status, 204);
    assert!(res.body.is_null());
    ctx.get(&path, t).await.problem(404, "not_found");
    ctx.delete(&path, t).await.problem(404, "not_found");
    assert!(ctx.bot_rows().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn my_bots_are_paginated_like_gatehouse_lists() {
    let ctx = Ctx::new().await;
    let alice = ctx.client().await;
    let t = &alice.access_token;
    for i in 1..=5 {
        ctx.create_bot(t, &format!("bot-{i}")).await;
    }
    let res = ctx.get("/bots/me?limit=2", t).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["total"], 5);
    assert_eq!(res.body["limit"], 2);
    assert_eq!(res.body["offset"], 0);
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&res.body), ["bot-5", "bot-4"]);
    let res = ctx.get("/bots/me?limit=2&offset=4", t).await;
    assert_eq!(names(&res.body), ["bot-1"]);
    assert_eq!(res.body["offset"], 4);
    let res = ctx.get("/bots/me?offset=10", t).await;
    assert_eq!(res.body["items"], json!([]));
    assert_eq!(res.body["total"], 5);
    let res = ctx.get("/bots/me", t).await;
    assert_eq!(res.body["limit"], 50);

    let res = ctx.get("/bots/me?limit=0&offset=-1", t).await;
    res.problem(422, "validation_failed");
    assert_eq!(
        res.field_errors(),
        [
            ("limit".to_owned(), "out_of_range".to_owned()),
            ("offset".to_owned(), "out_of_range".to_owned())
        ]
    );
    ctx.get("/bots/me?limit=201", t)
        .await
        .problem(422, "validation_failed");
    let res = ctx.get("/bots/me?limit=abc", t).await;
    assert_eq!(res.field_errors()[0].0, "limit");
    let res = ctx.get("/bots/me?owner=someone", t).await;
    res.problem(422, "validation_failed");
    assert_eq!(res.field_errors()[0].0, "owner");
}
