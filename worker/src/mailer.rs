//! Outgoing email: templates (minijinja) and transports (lettre SMTP pool
//! or stdout).

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use minijinja::{Environment, context};

use crate::config::{MailTransport, WorkerConfig};

pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    templates: Environment<'static>,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Log,
}

/// The rendered verification email.
pub struct VerificationEmail<'a> {
    pub to: &'a str,
    pub name: Option<&'a str>,
    pub code: &'a str,
    pub link: &'a str,
    pub code_minutes: u64,
    pub link_hours: u64,
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
        templates.add_template(
            "verification.txt",
            include_str!("../templates/verification.txt"),
        )?;
        templates.add_template(
            "verification.html",
            include_str!("../templates/verification.html"),
        )?;
        Ok(Self {
            transport,
            from: config.mail_from.parse()?,
            templates,
        })
    }

    pub async fn send_verification(&self, email: &VerificationEmail<'_>) -> anyhow::Result<()> {
        let ctx = context! {
            name => email.name,
            code => email.code,
            link => email.link,
            code_minutes => email.code_minutes,
            link_hours => email.link_hours,
        };
        let text = self
            .templates
            .get_template("verification.txt")?
            .render(&ctx)?;
        let html = self
            .templates
            .get_template("verification.html")?
            .render(&ctx)?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(email.to.parse()?)
            .subject(format!("Your Gatehouse verification code: {}", email.code))
            .multipart(MultiPart::alternative_plain_html(text.clone(), html))?;
        match &self.transport {
            Transport::Smtp(smtp) => {
                smtp.send(message).await?;
            }
            Transport::Log => {
                // Development transport: the contract asks for the email on the console.
                println!(
                    "---- email to {} ----\n{text}\n---- end of email ----",
                    email.to
                );
            }
        }
        Ok(())
    }
}
