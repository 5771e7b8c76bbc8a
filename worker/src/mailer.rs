//! Outgoing email: templates (minijinja) and transports (lettre SMTP pool
//! or stdout). Every email is a text and an HTML template of one name in
//! `worker/templates/`, listed in [`TEMPLATES`], sent with [`Mailer::send`].

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use minijinja::{Environment, context};

use crate::config::{MailTransport, WorkerConfig};

/// Every email template: `(name, text, html)`. Adding an email adds one
/// line here and the two files.
const TEMPLATES: &[(&str, &str, &str)] = &[
    (
        "verification",
        include_str!("../templates/verification.txt"),
        include_str!("../templates/verification.html"),
    ),
    (
        "password_reset",
        include_str!("../templates/password_reset.txt"),
        include_str!("../templates/password_reset.html"),
    ),
    (
        "password_changed",
        include_str!("../templates/password_changed.txt"),
        include_str!("../templates/password_changed.html"),
    ),
    (
        "email_change_confirm",
        include_str!("../templates/email_change_confirm.txt"),
        include_str!("../templates/email_change_confirm.html"),
    ),
    (
        "email_change_notice",
        include_str!("../templates/email_change_notice.txt"),
        include_str!("../templates/email_change_notice.html"),
    ),
    (
        "account_deleted",
        include_str!("../templates/account_deleted.txt"),
        include_str!("../templates/account_deleted.html"),
    ),
    (
        "purge_reminder",
        include_str!("../templates/purge_reminder.txt"),
        include_str!("../templates/purge_reminder.html"),
    ),
];

pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    templates: Environment<'static>,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Log,
}

/// One email to send: a template of [`TEMPLATES`] and its variables.
pub struct Email<'a> {
    pub to: &'a str,
    pub subject: String,
    pub template: &'static str,
    pub context: minijinja::Value,
}

/// The verification email (code and link). It carries no user-supplied
/// text (no name): whatever a user types never reaches an email, so a
/// signup cannot make Gatehouse send someone else a message of its choice
/// (issue 11 item 13).
pub struct VerificationEmail<'a> {
    pub to: &'a str,
    pub code: &'a str,
    pub link: &'a str,
    pub code_minutes: u64,
    pub link_hours: u64,
}

impl<'a> From<&VerificationEmail<'a>> for Email<'a> {
    fn from(e: &VerificationEmail<'a>) -> Self {
        Email {
            to: e.to,
            subject: format!("Your Gatehouse verification code: {}", e.code),
            template: "verification",
            context: context! {
                code => e.code,
                link => e.link,
                code_minutes => e.code_minutes,
                link_hours => e.link_hours,
            },
        }
    }
}

impl Mailer {
    pub fn new(config: &WorkerConfig) -> anyhow::Result<Self> {
        let transport = match config.mail_transport {
            MailTransport::Smtp => {
                let url = config.smtp_url.as_deref().unwrap_or_default();
                Transport::Smtp(AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?.build())
            }
            MailTransport::Log => {
                tracing::warn!(
                    "MAIL_TRANSPORT=log prints emails, codes included, to stdout: use it only for local development"
                );
                Transport::Log
            }
        };
        let mut templates = Environment::new();
        for (name, text, html) in TEMPLATES {
            templates.add_template_owned(format!("{name}.txt"), *text)?;
            templates.add_template_owned(format!("{name}.html"), *html)?;
        }
        Ok(Self {
            transport,
            from: config.mail_from.parse()?,
            templates,
        })
    }

    pub async fn send_verification(&self, email: &VerificationEmail<'_>) -> anyhow::Result<()> {
        self.send(email.into()).await
    }

    /// Render `email`'s template as text and HTML and send it.
    pub async fn send(&self, email: Email<'_>) -> anyhow::Result<()> {
        let render = |ext: &str| -> anyhow::Result<String> {
            let name = format!("{}.{ext}", email.template);
            Ok(self.templates.get_template(&name)?.render(&email.context)?)
        };
        let (text, html) = (render("txt")?, render("html")?);
        let message = Message::builder()
            .from(self.from.clone())
            .to(email.to.parse()?)
            .subject(email.subject.clone())
            .multipart(MultiPart::alternative_plain_html(text.clone(), html))?;
        match &self.transport {
            Transport::Smtp(smtp) => {
                smtp.send(message).await?;
            }
            Transport::Log => {
                // Development transport: the contract asks for the email on
                // the console. A tracing event, so JSON logs stay one object
                // per line.
                tracing::info!(
                    target: "gatehouse_worker::mail",
                    to = %email.to,
                    subject = %email.subject,
                    body = %text,
                    "email (MAIL_TRANSPORT=log)"
                );
            }
        }
        Ok(())
    }
}
