//! Filling an empty SQLite R*Tree with many boxes in one pass.
//!
//! SQLite's R*Tree has no bulk load: each row inserted through the virtual
//! table chooses a leaf, may split it, and rewrites the leaf and every node
//! above it, about 4 µs a box. Loading a million sites spent a fifth of its
//! time there. When the tree is empty, the same tree can instead be packed
//! from boxes already sorted along a space-filling curve: leaves of
//! neighbouring boxes, each node written once. The nodes are written in the
//! R*Tree's own file format (the `%_node`, `%_rowid` and `%_parent` tables
//! that SQLite documents in `rtree.c`), coordinates rounded outwards to
//! 32-bit floats exactly as the module rounds them, so that the result is the
//! tree SQLite could have built and `PRAGMA integrity_check` (which runs the
//! module's own `rtreecheck`) verifies it.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

/// The module's rounding of a lower bound to a 32-bit float: the greatest
/// float not above it.
fn down(v: f64) -> f32 {
    let f = v as f32;
    if f64::from(f) > v { f.next_down() } else { f }
}

/// The module's rounding of an upper bound: the least float not below it.
fn up(v: f64) -> f32 {
    let f = v as f32;
    if f64::from(f) < v { f.next_up() } else { f }
}

/// One cell of a node: a row id (in a leaf) or a child node's number, and
/// its box as the module stores it, minimum and maximum of each dimension in
/// column order.
struct Cell<const N: usize> {
    id: i64,
    coords: [f32; N],
}

impl<const N: usize> Cell<N> {
    /// The smallest box holding every cell of `cells`, under `id`.
    fn around(id: i64, cells: &[Cell<N>]) -> Self {
        let mut coords = cells[0].coords;
        for c in &cells[1..] {
            for d in (0..N).step_by(2) {
                coords[d] = coords[d].min(c.coords[d]);
                coords[d + 1] = coords[d + 1].max(c.coords[d + 1]);
            }
        }
        Cell { id, coords }
    }
}

/// A node's bytes: the tree's depth (read from the root only), the number of
/// cells, then each cell's id and coordinates, all big-endian, padded with
/// zeros to the node size.
fn node_bytes<const N: usize>(depth: u16, cells: &[Cell<N>], size: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(size);
    data.extend_from_slice(&depth.to_be_bytes());
    data.extend_from_slice(&(cells.len() as u16).to_be_bytes());
    for c in cells {
        data.extend_from_slice(&c.id.to_be_bytes());
        for v in c.coords {
            data.extend_from_slice(&v.to_bits().to_be_bytes());
        }
    }
    data.resize(size, 0);
    data
}

/// Adds `boxes` (a row id and its box: minimum and maximum of each dimension
/// in the table's column order) to the R*Tree `table`. When they are at
/// least as many as the rows already there, the whole tree is packed anew
/// from both, which costs in proportion to the boxes added; otherwise they go
/// in one by one through the table, in curve order so that consecutive rows
/// touch the same nodes. Must run inside the caller's transaction.
pub(super) fn bulk_insert<const N: usize>(
    conn: &Connection,
    table: &str,
    mut boxes: Vec<(i64, [f64; N])>,
) -> rusqlite::Result<()> {
    const {
        assert!(
            N >= 4 && N.is_multiple_of(2),
            "at least two dimensions, a minimum and maximum each"
        )
    };
    let root: Option<Vec<u8>> = conn
        .query_row(
            &format!("SELECT data FROM \"{table}_node\" WHERE nodeno = 1"),
            [],
            |r| r.get(0),
        )
        .optional()?;
    let size = root.map_or(0, |r| r.len());
    let fanout = size.saturating_sub(4) / (8 + 4 * N);
    // Counted only as far as needed to decide.
    let existing: usize = conn.query_row(
        &format!("SELECT count(*) FROM (SELECT 1 FROM \"{table}_rowid\" LIMIT ?1)"),
        [boxes.len() as i64 + 1],
        |r| r.get::<_, i64>(0),
    )? as usize;
    if boxes.is_empty() {
        return Ok(());
    }
    if fanout < 2 || existing > boxes.len() {
        boxes.sort_by_cached_key(|(_, b)| curve_position(b));
        let columns = vec!["?"; N + 1].join(", ");
        let mut insert = conn.prepare(&format!("INSERT INTO \"{table}\" VALUES ({columns})"))?;
        for (id, b) in &boxes {
            let row = std::iter::once(Value::Integer(*id)).chain(b.iter().map(|v| Value::Real(*v)));
            insert.execute(rusqlite::params_from_iter(row))?;
        }
        return Ok(());
    }
    if existing > 0 {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\""))?;
        let rows = stmt.query_map([], |r| {
            let mut b = [0.0; N];
            for (d, v) in b.iter_mut().enumerate() {
                *v = r.get(d + 1)?;
            }
            Ok((r.get(0)?, b))
        })?;
        for row in rows {
            boxes.push(row?);
        }
        conn.execute_batch(&format!(
            "DELETE FROM \"{table}_rowid\"; DELETE FROM \"{table}_parent\";
             DELETE FROM \"{table}_node\" WHERE nodeno <> 1;"
        ))?;
    }
    boxes.sort_by_cached_key(|(_, b)| curve_position(b));
    pack(conn, table, &boxes, size, fanout)
}

/// The place of a box's centre in its first two dimensions on a Z-order
/// curve, 16 bits an axis: boxes near each other on the curve are near on
/// the map.
fn curve_position<const N: usize>(b: &[f64; N]) -> u32 {
    let quantise = |v: f64, lo: f64, span: f64| -> u32 {
        (((v - lo) / span).clamp(0.0, 1.0) * f64::from(u16::MAX)) as u32
    };
    let spread = |mut v: u32| {
        v = (v | (v << 8)) & 0x00ff_00ff;
        v = (v | (v << 4)) & 0x0f0f_0f0f;
        v = (v | (v << 2)) & 0x3333_3333;
        (v | (v << 1)) & 0x5555_5555
    };
    let x = quantise((b[0] + b[1]) / 2.0, -180.0, 360.0);
    let y = quantise((b[2] + b[3]) / 2.0, -90.0, 180.0);
    spread(x) | (spread(y) << 1)
}

/// Writes `boxes` as the whole tree: leaves of consecutive boxes, nodes of
/// consecutive leaves, up to the root (node 1, whose row exists already).
fn pack<const N: usize>(
    conn: &Connection,
    table: &str,
    boxes: &[(i64, [f64; N])],
    size: usize,
    fanout: usize,
) -> rusqlite::Result<()> {
    let mut insert_node = conn.prepare(&format!(
        "INSERT INTO \"{table}_node\" (nodeno, data) VALUES (?1, ?2)"
    ))?;
    let mut homes = Homes::new(conn, table);
    let mut level: Vec<Cell<N>> = boxes
        .iter()
        .map(|(id, b)| {
            let mut coords = [0.0f32; N];
            for d in (0..N).step_by(2) {
                coords[d] = down(b[d]);
                coords[d + 1] = up(b[d + 1]);
            }
            Cell { id: *id, coords }
        })
        .collect();
    // Node 1 is the root; the others are numbered as they are made.
    let mut next_node: i64 = 2;
    let mut depth: u16 = 0;
    while level.len() > fanout {
        let mut above = Vec::with_capacity(level.len().div_ceil(fanout));
        for group in level.chunks(fanout) {
            let nodeno = next_node;
            next_node += 1;
            insert_node.execute(params![nodeno, node_bytes(0, group, size)])?;
            for c in group {
                homes.add(depth == 0, c.id, nodeno);
            }
            above.push(Cell::around(nodeno, group));
        }
        level = above;
        depth += 1;
    }
    conn.execute(
        &format!("UPDATE \"{table}_node\" SET data = ?1 WHERE nodeno = 1"),
        params![node_bytes(depth, &level, size)],
    )?;
    for c in &level {
        homes.add(depth == 0, c.id, 1);
    }
    homes.write()
}

/// Where each row and node is: a leaf's cells are rows, found through
/// `%_rowid`; any other node's cells are nodes, found through `%_parent`.
/// Gathered while the nodes are made and written at the end in key order, so
/// that each shadow table grows at its end instead of taking rows all over
/// its B-tree (the rows arrive in curve order, not id order).
struct Homes<'a> {
    conn: &'a Connection,
    table: &'a str,
    rows: Vec<(i64, i64)>,
    nodes: Vec<(i64, i64)>,
}

impl<'a> Homes<'a> {
    /// Pairs written by one statement.
    const PER_STATEMENT: usize = 256;

    fn new(conn: &'a Connection, table: &'a str) -> Self {
        Homes {
            conn,
            table,
            rows: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// Says that row (or node) `id` is in node `home`.
    fn add(&mut self, is_row: bool, id: i64, home: i64) {
        let list = if is_row {
            &mut self.rows
        } else {
            &mut self.nodes
        };
        list.push((id, home));
    }

    fn write(mut self) -> rusqlite::Result<()> {
        for (shadow, columns, list) in [
            ("rowid", "rowid, nodeno", &mut self.rows),
            ("parent", "nodeno, parentnode", &mut self.nodes),
        ] {
            list.sort_unstable();
            // `OR ROLLBACK` spares each many-row statement a journal of its
            // own: the caller's transaction is undone whole on any failure.
            let head = format!(
                "INSERT OR ROLLBACK INTO \"{}_{shadow}\" ({columns})",
                self.table
            );
            for group in list.chunks(Self::PER_STATEMENT) {
                let sql = super::insert_rows(&head, group.len(), |i| {
                    format!("(?{}, ?{})", 2 * i + 1, 2 * i + 2)
                });
                let values = group.iter().flat_map(|&(id, home)| [id, home]);
                self.conn
                    .prepare_cached(&sql)?
                    .execute(rusqlite::params_from_iter(values))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn two_trees() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE VIRTUAL TABLE packed USING rtree(id, west, east, south, north);
             CREATE VIRTUAL TABLE inserted USING rtree(id, west, east, south, north);",
        )
        .unwrap();
        conn
    }

    type Row = (i64, f64, f64, f64, f64);

    fn rows(conn: &Connection, sql: &str) -> Vec<Row> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    fn insert_each(conn: &Connection, table: &str, boxes: &[(i64, [f64; 4])]) {
        let mut stmt = conn
            .prepare(&format!("INSERT INTO {table} VALUES (?1, ?2, ?3, ?4, ?5)"))
            .unwrap();
        for (id, [w, e, s, n]) in boxes {
            stmt.execute(params![id, w, e, s, n]).unwrap();
        }
    }

    fn checked(conn: &Connection, table: &str) -> String {
        conn.query_row(&format!("SELECT rtreecheck('{table}')"), [], |r| r.get(0))
            .unwrap()
    }

    fn boxes_strategy() -> impl Strategy<Value = Vec<(i64, [f64; 4])>> {
        prop::collection::vec(
            (-180.0f64..179.0, -90.0f64..89.0, 0.0f64..1.0, 0.0f64..1.0),
            1..3_000,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (w, s, dw, dh))| (i as i64 * 3 + 1, [w, w + dw, s, s + dh]))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Some boxes are in the tree already (inserted through the table,
        /// so its nodes are cached by this connection), then the rest are
        /// added in bulk: packed anew when they are the more, one by one
        /// when not. Either way the tree must be whole and hold and find
        /// exactly what inserting each box would have.
        #[test]
        fn a_bulk_insert_holds_and_finds_what_inserting_each_box_would(
            boxes in boxes_strategy(),
            before in 0.0f64..1.0,
            windows in prop::collection::vec((-180.0f64..180.0, -90.0f64..90.0, 0.0f64..40.0), 8),
        ) {
            let conn = two_trees();
            let (old, new) = boxes.split_at((boxes.len() as f64 * before) as usize);
            insert_each(&conn, "packed", old);
            insert_each(&conn, "inserted", old);
            let _ = rows(&conn, "SELECT * FROM packed WHERE west > 0");
            bulk_insert(&conn, "packed", new.to_vec()).unwrap();
            insert_each(&conn, "inserted", new);
            prop_assert_eq!(checked(&conn, "packed"), "ok");
            let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            prop_assert_eq!(integrity, "ok");
            prop_assert_eq!(
                rows(&conn, "SELECT * FROM packed ORDER BY id"),
                rows(&conn, "SELECT * FROM inserted ORDER BY id")
            );
            for (w, s, span) in windows {
                let q = |t: &str| format!(
                    "SELECT * FROM {t} WHERE east >= {w} AND west <= {} AND north >= {s} AND south <= {} ORDER BY id",
                    w + span, s + span);
                prop_assert_eq!(rows(&conn, &q("packed")), rows(&conn, &q("inserted")));
            }
        }
    }

    fn grid(n: i32) -> Vec<(i64, [f64; 4])> {
        (0..n)
            .map(|i| {
                let x = f64::from(i % 100) - 50.0;
                let y = f64::from(i / 100) - 25.0;
                (i64::from(i) + 1, [x, x + 0.5, y, y + 0.5])
            })
            .collect()
    }

    #[test]
    fn a_packed_tree_takes_later_inserts_and_deletes_as_any_other() {
        let conn = two_trees();
        bulk_insert(&conn, "packed", grid(5_000)).unwrap();
        conn.execute_batch(
            "INSERT INTO packed VALUES (100000, 10.1, 10.2, 5.1, 5.2);
             DELETE FROM packed WHERE id BETWEEN 1000 AND 3999;",
        )
        .unwrap();
        assert_eq!(checked(&conn, "packed"), "ok");
        let found = rows(
            &conn,
            "SELECT * FROM packed WHERE east >= 10.1 AND west <= 10.15 AND north >= 5.1 AND south <= 5.15",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, 100000);
        let left: i64 = conn
            .query_row("SELECT count(*) FROM packed", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 2_001);
    }

    #[test]
    fn a_packed_tree_fills_its_nodes_where_inserting_leaves_them_part_empty() {
        let conn = two_trees();
        bulk_insert(&conn, "packed", grid(10_000)).unwrap();
        insert_each(&conn, "inserted", &grid(10_000));
        let nodes = |t: &str| -> i64 {
            conn.query_row(&format!("SELECT count(*) FROM {t}_node"), [], |r| r.get(0))
                .unwrap()
        };
        // 51 boxes a node: 197 leaves, 4 nodes above them, and the root.
        assert_eq!(nodes("packed"), 202);
        assert!(nodes("inserted") > 250, "{}", nodes("inserted"));
    }

    #[test]
    fn a_damaged_packed_tree_fails_the_integrity_check() {
        let conn = two_trees();
        let boxes: Vec<(i64, [f64; 4])> = (0..500)
            .map(|i| (i + 1, [i as f64 * 0.1, i as f64 * 0.1 + 0.05, 1.0, 1.05]))
            .collect();
        bulk_insert(&conn, "packed", boxes).unwrap();
        // A leaf's first box moved far outside what its parent says it holds.
        let mut leaf: Vec<u8> = conn
            .query_row("SELECT data FROM packed_node WHERE nodeno = 2", [], |r| {
                r.get(0)
            })
            .unwrap();
        leaf[12..16].copy_from_slice(&(-170.0f32).to_bits().to_be_bytes());
        conn.execute("UPDATE packed_node SET data = ?1 WHERE nodeno = 2", [leaf])
            .unwrap();
        let integrity: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_ne!(integrity, "ok");
    }

    #[test]
    fn rounding_to_floats_never_shrinks_a_box() {
        for v in [
            0.1,
            -0.1,
            179.999_999_9,
            -179.999_999_9,
            1e-30,
            37.123_456_789,
        ] {
            assert!(f64::from(down(v)) <= v, "{v}");
            assert!(f64::from(up(v)) >= v, "{v}");
        }
    }
}
