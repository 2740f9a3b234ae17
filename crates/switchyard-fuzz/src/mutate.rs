//! The mutator: byte flips, interesting values, insertions, deletions,
//! duplications, splices, length-field and decimal-number tweaks, and
//! dictionary tokens, applied to inputs of a bounded corpus.

use rand::Rng;
use rand::rngs::SmallRng;

/// Longest input the mutator produces, in bytes.
pub const MAX_INPUT: usize = 64 * 1024;

/// Integer values that often sit on a boundary of a length check.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x3ff,
    0x400,
    0x401,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x10_0000,
    0x10_0001,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    u64::MAX,
];

/// Decimal numbers for text formats (RESP lengths, ids, URL parameters).
const DECIMALS: &[&str] = &[
    "0",
    "1",
    "-1",
    "-2",
    "255",
    "256",
    "65535",
    "65536",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "",
];

/// Applies one to four random mutations to a copy of `input`; `other` is a
/// second corpus entry for splices and `dict` the target's tokens. The
/// result has at most `max_len` (and at most [`MAX_INPUT`]) bytes.
pub fn mutate(
    rng: &mut SmallRng,
    input: &[u8],
    other: &[u8],
    dict: &[&[u8]],
    max_len: usize,
) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = rng.random_range(1..=4);
    for _ in 0..rounds {
        match rng.random_range(0..10u8) {
            0 => flip_bit(rng, &mut out),
            1 => set_byte(rng, &mut out),
            2 => insert_random(rng, &mut out),
            3 => delete_range(rng, &mut out),
            4 => duplicate_range(rng, &mut out),
            5 => splice(rng, &mut out, other),
            6 => tweak_length(rng, &mut out),
            7 => tweak_decimal(rng, &mut out),
            8 => insert_token(rng, &mut out, dict),
            _ => overwrite_token(rng, &mut out, dict),
        }
    }
    out.truncate(max_len.min(MAX_INPUT));
    out
}

fn flip_bit(rng: &mut SmallRng, out: &mut [u8]) {
    if out.is_empty() {
        return;
    }
    let i = rng.random_range(0..out.len());
    out[i] ^= 1 << rng.random_range(0..8);
}

fn set_byte(rng: &mut SmallRng, out: &mut [u8]) {
    if out.is_empty() {
        return;
    }
    let i = rng.random_range(0..out.len());
    out[i] = match rng.random_range(0..4u8) {
        0 => rng.random(),
        1 => 0,
        2 => 0xff,
        _ => *[b'\r', b'\n', b'%', b':', b'-', b'0', b'9', 0x80, 0x7f]
            .get(rng.random_range(0..9))
            .unwrap_or(&0),
    };
}

fn insert_random(rng: &mut SmallRng, out: &mut Vec<u8>) {
    let at = rng.random_range(0..=out.len());
    let n = rng.random_range(1..=8);
    let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
    out.splice(at..at, bytes);
}

fn delete_range(rng: &mut SmallRng, out: &mut Vec<u8>) {
    if out.is_empty() {
        return;
    }
    let at = rng.random_range(0..out.len());
    let n = rng.random_range(1..=(out.len() - at).min(16));
    out.drain(at..at + n);
}

fn duplicate_range(rng: &mut SmallRng, out: &mut Vec<u8>) {
    if out.is_empty() {
        return;
    }
    let at = rng.random_range(0..out.len());
    let n = rng.random_range(1..=(out.len() - at).min(64));
    let copy = out[at..at + n].to_vec();
    let to = rng.random_range(0..=out.len());
    out.splice(to..to, copy);
}

fn splice(rng: &mut SmallRng, out: &mut Vec<u8>, other: &[u8]) {
    let cut = rng.random_range(0..=out.len());
    let from = rng.random_range(0..=other.len());
    out.truncate(cut);
    out.extend_from_slice(&other[from..]);
}

/// Reads 1, 2, 4 or 8 bytes at a random offset as a little- or big-endian
/// integer and sets it to an interesting value or moves it by a little.
fn tweak_length(rng: &mut SmallRng, out: &mut [u8]) {
    let width = [1usize, 2, 4, 8][rng.random_range(0..4)];
    if out.len() < width {
        return;
    }
    let at = rng.random_range(0..=out.len() - width);
    let big_endian = rng.random_bool(0.25);
    let field = &mut out[at..at + width];
    let mut value: u64 = 0;
    for i in 0..width {
        let b = if big_endian {
            field[i]
        } else {
            field[width - 1 - i]
        };
        value = (value << 8) | u64::from(b);
    }
    let value = match rng.random_range(0..3u8) {
        0 => INTERESTING[rng.random_range(0..INTERESTING.len())],
        1 => value.wrapping_add(rng.random_range(1..=16)),
        _ => value.wrapping_sub(rng.random_range(1..=16)),
    };
    for i in 0..width {
        let b = (value >> (8 * i)) as u8;
        if big_endian {
            field[width - 1 - i] = b;
        } else {
            field[i] = b;
        }
    }
}

/// Replaces a run of ASCII digits (with its sign) by another decimal number.
fn tweak_decimal(rng: &mut SmallRng, out: &mut Vec<u8>) {
    let starts: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].is_ascii_digit() && (i == 0 || !out[i - 1].is_ascii_digit()))
        .collect();
    if starts.is_empty() {
        return;
    }
    let mut begin = starts[rng.random_range(0..starts.len())];
    let mut end = begin;
    while end < out.len() && out[end].is_ascii_digit() {
        end += 1;
    }
    if begin > 0 && out[begin - 1] == b'-' {
        begin -= 1;
    }
    let text = DECIMALS[rng.random_range(0..DECIMALS.len())];
    out.splice(begin..end, text.bytes());
}

fn insert_token(rng: &mut SmallRng, out: &mut Vec<u8>, dict: &[&[u8]]) {
    if dict.is_empty() {
        return;
    }
    let token = dict[rng.random_range(0..dict.len())];
    let at = rng.random_range(0..=out.len());
    out.splice(at..at, token.iter().copied());
}

fn overwrite_token(rng: &mut SmallRng, out: &mut Vec<u8>, dict: &[&[u8]]) {
    if dict.is_empty() || out.is_empty() {
        return;
    }
    let token = dict[rng.random_range(0..dict.len())];
    let at = rng.random_range(0..out.len());
    let end = (at + token.len()).min(out.len());
    out.splice(at..end, token.iter().copied());
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mutations_stay_bounded_and_reproducible() {
        let seed = b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n";
        let big = vec![7u8; MAX_INPUT];
        let mut a = SmallRng::seed_from_u64(42);
        let mut b = SmallRng::seed_from_u64(42);
        for _ in 0..5_000 {
            let x = mutate(&mut a, seed, &big, &[b"\r\n", b"$"], MAX_INPUT);
            let y = mutate(&mut b, seed, &big, &[b"\r\n", b"$"], MAX_INPUT);
            assert!(x.len() <= MAX_INPUT);
            assert_eq!(x, y);
        }
        assert!(mutate(&mut a, b"", b"", &[], MAX_INPUT).len() <= MAX_INPUT);
        for _ in 0..1_000 {
            assert!(mutate(&mut a, seed, &big, &[], 40).len() <= 40);
        }
    }
}
