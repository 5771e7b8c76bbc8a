//! `gatehouse-worker --help` of the real binary: grouped, every option
//! described, in the worker's own words.

use clap::CommandFactory;

fn help() -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-worker"))
        .arg("--help")
        .env_clear()
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// The lines under a `Heading:` of a help text, up to the next heading.
fn section_of(help: &str, heading: &str) -> String {
    help.lines()
        .skip_while(|l| *l != heading)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn item_5_worker_help_is_grouped_and_every_option_described() {
    let help = help();
    for (heading, option) in [
        ("Database:", "--database-url"),
        ("Redis:", "--redis-url"),
        ("Logging:", "--log-format"),
        ("Worker:", "--worker-concurrency"),
        ("Mail:", "--smtp-url"),
        ("Tokens:", "--jwt-secret"),
        ("Scheduled jobs:", "--purge-schedule"),
    ] {
        assert!(
            section_of(&help, heading).contains(option),
            "{option} under {heading} in\n{help}"
        );
    }
    let loose: Vec<&str> = section_of(&help, "Options:")
        .lines()
        .filter(|l| l.trim_start().starts_with('-'))
        .filter(|l| !l.contains("--help") && !l.contains("--version"))
        .map(|_| "")
        .collect();
    assert!(loose.is_empty(), "options without a heading in\n{help}");

    let cmd = gatehouse_worker::config::WorkerConfig::command();
    let undescribed: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.get_help().is_none() && a.get_long_help().is_none())
        .map(|a| a.get_id().to_string())
        .collect();
    assert!(
        undescribed.is_empty(),
        "without a description: {undescribed:?}"
    );

    // The worker serves no HTTP API: none of the API's wording.
    for api_words in ["503", "rate limit", "HTTP API", "request"] {
        assert!(
            !help.to_lowercase().contains(&api_words.to_lowercase()),
            "{api_words:?} in the worker's help:\n{help}"
        );
    }
}
