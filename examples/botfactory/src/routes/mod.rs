pub mod bots;
pub mod clients;
pub mod health;
