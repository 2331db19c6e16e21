//! Geometries and JSON documents as PostgreSQL receives them in binary
//! COPY: a footprint or an observation's place as extended WKB for a
//! `geography` column, and a feature's text for a `jsonb` one. The server
//! then only reads the coordinates, where parsing GeoJSON cost it as much as
//! the rest of a bulk write.

use crate::model::{Footprint, Place};
use bytes::{BufMut, BytesMut};
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use std::error::Error;

/// The extended WKB flag that says an SRID follows the type.
const HAS_SRID: u32 = 0x2000_0000;
const WGS84: u32 = 4326;
const POINT: u32 = 1;
const POLYGON: u32 = 3;
const MULTI_POLYGON: u32 = 6;

/// A geometry in extended WKB (little-endian, SRID 4326), for a `geography`
/// parameter or COPY column.
#[derive(Debug, Clone)]
pub(super) struct Geography(Vec<u8>);

impl Geography {
    pub(super) fn of_footprint(f: &Footprint) -> Self {
        let mut out = Vec::with_capacity(16 + 16 * f.vertex_count() + 8 * f.parts().len());
        if f.is_multi() {
            header(&mut out, MULTI_POLYGON);
            put_u32(&mut out, f.parts().len());
            for part in f.parts() {
                out.push(1);
                put_u32(&mut out, POLYGON as usize);
                rings(&mut out, part);
            }
        } else {
            header(&mut out, POLYGON);
            rings(&mut out, &f.parts()[0]);
        }
        Self(out)
    }

    pub(super) fn of_place(p: &Place) -> Self {
        match p {
            Place::Point(ll) => {
                let mut out = Vec::with_capacity(25);
                header(&mut out, POINT);
                out.extend_from_slice(&ll.lon().to_le_bytes());
                out.extend_from_slice(&ll.lat().to_le_bytes());
                Self(out)
            }
            Place::Area(f) => Self::of_footprint(f),
        }
    }
}

fn header(out: &mut Vec<u8>, kind: u32) {
    out.push(1);
    out.extend_from_slice(&(kind | HAS_SRID).to_le_bytes());
    out.extend_from_slice(&WGS84.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // A count above u32 cannot come from a parsed GeoJSON document of a
    // size the server accepts; saturating keeps the writer total.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn rings(out: &mut Vec<u8>, rings: &[Vec<[f64; 2]>]) {
    put_u32(out, rings.len());
    for ring in rings {
        put_u32(out, ring.len());
        for [lon, lat] in ring {
            out.extend_from_slice(&lon.to_le_bytes());
            out.extend_from_slice(&lat.to_le_bytes());
        }
    }
}

impl ToSql for Geography {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "geography"
    }

    to_sql_checked!();
}

/// A JSON document's text for a `jsonb` parameter or COPY column: the
/// binary form is a version byte and the text.
#[derive(Debug)]
pub(super) struct JsonbText<'a>(pub(super) &'a str);

impl ToSql for JsonbText<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_u8(1);
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::pg_cluster::Cluster;
    use postgres::{Client, NoTls};
    use serde_json::json;

    #[test]
    fn every_geometry_reaches_the_server_as_its_geojson_would() {
        let Some(cluster) = Cluster::start() else {
            return;
        };
        let mut client = Client::connect(&cluster.url(), NoTls).unwrap();
        crate::store::postgres::schema::migrate(&mut client).unwrap();
        let ty = client.prepare("SELECT NULL::geography").unwrap().columns()[0]
            .type_()
            .clone();
        let geometries = [
            json!({"type": "Point", "coordinates": [126.75, 39.8]}),
            json!({"type": "Point", "coordinates": [-179.999999999, -89.5]}),
            json!({"type": "Polygon", "coordinates": [[[179.9, 10.0], [-179.9, 10.0], [-179.9, 10.1], [179.9, 10.0]]]}),
            json!({"type": "Polygon", "coordinates": [
                [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]],
                [[0.2, 0.2], [0.2, 0.4], [0.4, 0.4], [0.2, 0.2]]]}),
            json!({"type": "MultiPolygon", "coordinates": [
                [[[125.1, 40.1], [125.2, 40.1], [125.2, 40.2], [125.1, 40.1]]],
                [[[126.0000000001, 41.0], [126.3, 41.0], [126.3, 41.3], [126.0000000001, 41.0]]]]}),
        ];
        let stmt = client
            .prepare_typed(
                "SELECT ST_AsEWKB($1::geography::geometry)
                      = ST_AsEWKB(ST_GeomFromGeoJSON($2::text)::geography::geometry)",
                &[ty, Type::TEXT],
            )
            .unwrap();
        for g in geometries {
            let place = Place::parse("geometry", &g).unwrap();
            let same: bool = client
                .query_one(
                    &stmt,
                    &[
                        &Geography::of_place(&place),
                        &place.to_geojson().to_string(),
                    ],
                )
                .unwrap()
                .get(0);
            assert!(same, "{g} arrives changed");
        }
    }

    #[test]
    fn a_json_text_arrives_as_the_same_document() {
        let Some(cluster) = Cluster::start() else {
            return;
        };
        let mut client = Client::connect(&cluster.url(), NoTls).unwrap();
        let text = r#"{"a": [1, 2.5, "é"], "b": {"c": null}}"#;
        let same: bool = client
            .query_one(
                "SELECT $1::jsonb = $2::text::jsonb",
                &[&JsonbText(text), &text],
            )
            .unwrap()
            .get(0);
        assert!(same);
    }
}
