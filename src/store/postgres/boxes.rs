//! The `bounds` columns of revisions and observations, computed where the
//! coordinates already are: a lon/lat box rounded outwards to 32-bit floats
//! as SQLite's R*Tree rounds it, so that area queries answer on both stores
//! alike. The schema's `sitewatch_box_low`/`sitewatch_box_high` compute the
//! same values for rows written without one; a test holds the two together.

/// `[west, south, east, north]` as the column holds it.
pub(super) fn index_box([west, south, east, north]: [f64; 4]) -> Vec<f32> {
    vec![low(west), low(south), high(east), high(north)]
}

/// The greatest normal float (or zero) not above `v`.
fn low(v: f64) -> f32 {
    if v == 0.0 {
        0.0
    } else if v.abs() < 1e-37 {
        // A subnormal edge would be no place on Earth; the server keeps to
        // normal floats there, and so do we.
        if v > 0.0 { 0.0 } else { -f32::MIN_POSITIVE }
    } else {
        let f = v as f32;
        if f64::from(f) > v { f.next_down() } else { f }
    }
}

/// The least normal float (or zero) not below `v`.
fn high(v: f64) -> f32 {
    if v == 0.0 {
        0.0
    } else if v.abs() < 1e-37 {
        if v < 0.0 { 0.0 } else { f32::MIN_POSITIVE }
    } else {
        let f = v as f32;
        if f64::from(f) < v { f.next_up() } else { f }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::pg_cluster::Cluster;
    use postgres::{Client, NoTls};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    #[test]
    fn a_box_holds_its_edges_and_rounds_no_further_than_one_float() {
        TestRunner::new(Config::with_cases(2_000))
            .run(&(-180.0f64..180.0, -90.0f64..90.0), |(lon, lat)| {
                let b = index_box([lon, lat, lon, lat]);
                prop_assert!(f64::from(b[0]) <= lon && f64::from(b[2]) >= lon);
                prop_assert!(f64::from(b[1]) <= lat && f64::from(b[3]) >= lat);
                prop_assert!(b[0] == b[2] || b[0].next_up() == b[2]);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn the_writer_and_the_server_compute_the_same_box() {
        let Some(cluster) = Cluster::start() else {
            return;
        };
        let mut client = Client::connect(&cluster.url(), NoTls).unwrap();
        crate::store::postgres::schema::migrate(&mut client).unwrap();
        let stmt = client
            .prepare("SELECT sitewatch_box_low($1), sitewatch_box_high($1)")
            .unwrap();
        let mut values = vec![
            0.0,
            -0.0,
            1e-38,
            -1e-38,
            1e-300,
            -1e-300,
            1e-37,
            -1e-37,
            180.0,
            -180.0,
            90.0,
            0.1,
            -0.1,
            126.3,
            f64::from(f32::MIN_POSITIVE),
            f64::from(f32::MIN_POSITIVE) * 0.999,
        ];
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7);
        for _ in 0..2_000 {
            values.push(rand::Rng::random_range(&mut rng, -180.0..180.0));
        }
        for v in values {
            let row = client.query_one(&stmt, &[&v]).unwrap();
            let (lo, hi): (f32, f32) = (row.get(0), row.get(1));
            let b = index_box([v, v, v, v]);
            assert_eq!(
                (b[0].to_bits(), b[2].to_bits()),
                (lo.to_bits(), hi.to_bits()),
                "the box of {v:e}: writer {:e} {:e}, server {lo:e} {hi:e}",
                b[0],
                b[2]
            );
        }
    }
}
