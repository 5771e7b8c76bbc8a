//! argon2id helper for `bench/run.sh`.
//!
//! `gatehouse-argon2-bound bound M T P SECONDS THREADS` measures scenario (i):
//! hashes/s of one thread with the given parameters, in two ways (a fresh
//! allocation per hash, as `PasswordHash`-style APIs do, and one reused
//! memory buffer), then THREADS threads at once with the faster way. The
//! bound is the faster single-thread rate times the cores. Prints JSON.
//!
//! `gatehouse-argon2-bound phc PASSWORD M T P` prints the PHC string of
//! PASSWORD, for the seeded bench users.

use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

fn argon(m: u32, t: u32, p: u32) -> Argon2<'static> {
    let params = Params::new(m, t, p, None).expect("argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hash for at least `secs`, after one untimed hash; returns hashes/s.
fn rate(a: &Argon2<'static>, secs: f64, reuse: bool) -> f64 {
    let salt = *b"0123456789abcdef";
    let mut out = [0u8; 32];
    let mut blocks = vec![Block::new(); a.params().block_count()];
    let mut once = |i: u64| {
        let pwd = i.to_le_bytes();
        if reuse {
            a.hash_password_into_with_memory(&pwd, &salt, &mut out, &mut blocks)
        } else {
            a.hash_password_into(&pwd, &salt, &mut out)
        }
        .expect("hash");
    };
    once(0);
    let start = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    let mut n = 0u64;
    while start.elapsed() < limit {
        n += 1;
        once(n);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize| -> u32 { args[i].parse().expect("number") };
    match args.get(1).map(String::as_str) {
        Some("phc") if args.len() == 6 => {
            let a = argon(num(3), num(4), num(5));
            let salt = SaltString::encode_b64(b"gatehouse-bench!").expect("salt");
            let phc = a
                .hash_password(args[2].as_bytes(), &salt)
                .expect("hash")
                .to_string();
            println!("{phc}");
        }
        Some("bound") if args.len() == 7 => {
            let (m, t, p) = (num(2), num(3), num(4));
            let secs: f64 = args[5].parse().expect("seconds");
            let threads = num(6) as usize;
            let a = argon(m, t, p);
            let alloc = rate(&a, secs, false);
            let reuse = rate(&a, secs, true);
            let best_reuse = reuse >= alloc;
            let per_core = alloc.max(reuse);
            let start = Instant::now();
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let a = a.clone();
                    std::thread::spawn(move || rate(&a, secs, best_reuse))
                })
                .collect();
            let parallel: f64 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
            println!(
                "{{\"m_cost\":{m},\"t_cost\":{t},\"p_cost\":{p},\"seconds\":{secs},\
                 \"single_alloc_hps\":{alloc:.2},\"single_reuse_hps\":{reuse:.2},\
                 \"per_core_hps\":{per_core:.2},\"cores\":{threads},\
                 \"bound_hps\":{bound:.2},\"parallel_hps\":{parallel:.2},\
                 \"parallel_seconds\":{ps:.2}}}",
                bound = per_core * threads as f64,
                ps = start.elapsed().as_secs_f64(),
            );
        }
        _ => {
            eprintln!(
                "usage: gatehouse-argon2-bound bound M T P SECONDS THREADS\n       gatehouse-argon2-bound phc PASSWORD M T P"
            );
            std::process::exit(2);
        }
    }
}
