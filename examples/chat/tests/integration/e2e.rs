//! The same scenarios against the real `gatehouse-api` (and, for the page,
//! `gatehouse-worker` emailing the verification code to a test SMTP sink).

use example_testkit::{Gatehouse, Setup};

#[tokio::test(flavor = "multi_thread")]
async fn real_gatehouse_fan_out_exactly_once_across_replicas() {
    crate::fanout::fan_out_exactly_once(Gatehouse::real(Setup::default()).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_gatehouse_logout_closes_the_socket_within_a_second() {
    crate::socket::logout_closes_sockets(Gatehouse::real(Setup::default()).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_gatehouse_two_browsers_sign_up_verify_chat_and_log_out() {
    crate::page::two_browsers_chat(true).await;
}
