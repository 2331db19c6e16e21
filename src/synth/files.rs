//! Writing a generated catalogue and its observation batches to files, one
//! feature at a time so that memory stays flat however large the catalogue.

use super::{ObservationPlan, ObservationStream, Placement, SiteStream};
use crate::model::Footprint;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// What `sitewatch gen` writes, and where.
#[derive(Debug, Clone)]
pub struct GenPlan {
    pub out_dir: PathBuf,
    pub sites: usize,
    pub seed: u64,
    pub observations: ObservationPlan,
    /// Also write `sites.tsv` (id, EWKT) for PostgreSQL's `COPY`.
    pub postgis_tsv: bool,
}

/// The files written, for the caller to load or report.
#[derive(Debug, Clone, PartialEq)]
pub struct GenReport {
    pub sites_file: PathBuf,
    pub sites: usize,
    pub tsv_file: Option<PathBuf>,
    pub observation_files: Vec<PathBuf>,
    pub observations: usize,
}

fn create(path: &Path) -> io::Result<BufWriter<File>> {
    File::create(path)
        .map(|f| BufWriter::with_capacity(1 << 20, f))
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))
}

/// A footprint as extended WKT on WGS84, the text PostGIS's geography type reads.
pub fn ewkt(footprint: &Footprint) -> String {
    let ring = |r: &Vec<[f64; 2]>| {
        let pts: Vec<String> = r.iter().map(|[x, y]| format!("{x} {y}")).collect();
        format!("({})", pts.join(","))
    };
    let polygon = |rings: &Vec<Vec<[f64; 2]>>| {
        let rs: Vec<String> = rings.iter().map(ring).collect();
        format!("({})", rs.join(","))
    };
    match footprint.parts() {
        [one] => format!("SRID=4326;POLYGON{}", polygon(one)),
        many => {
            let ps: Vec<String> = many.iter().map(polygon).collect();
            format!("SRID=4326;MULTIPOLYGON({})", ps.join(","))
        }
    }
}

/// Writes `sites.geojson` (and `sites.tsv` if asked), then the observation
/// batches as `observations-0001.geojson`, ... into `plan.out_dir`.
pub fn write_files(plan: &GenPlan) -> io::Result<GenReport> {
    std::fs::create_dir_all(&plan.out_dir)?;
    let sites_file = plan.out_dir.join("sites.geojson");
    let tsv_file = plan.postgis_tsv.then(|| plan.out_dir.join("sites.tsv"));
    let mut out = create(&sites_file)?;
    let mut tsv = tsv_file.as_deref().map(create).transpose()?;
    out.write_all(b"{\"type\":\"FeatureCollection\",\"features\":[\n")?;
    let mut placements: Vec<Placement> = Vec::with_capacity(plan.sites);
    for (i, (site, at)) in SiteStream::new(plan.sites, plan.seed).enumerate() {
        if i > 0 {
            out.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut out, &site.to_feature())?;
        if let Some(t) = &mut tsv {
            writeln!(t, "{}\t{}", site.id, ewkt(&site.footprint))?;
        }
        placements.push(at);
    }
    out.write_all(b"\n]}\n")?;
    out.flush()?;
    if let Some(mut t) = tsv {
        t.flush()?;
    }

    let mut observation_files = Vec::new();
    let mut written = 0;
    let mut stream = ObservationStream::new(plan.observations, &placements).peekable();
    while stream.peek().is_some() {
        let path = plan.out_dir.join(format!(
            "observations-{:04}.geojson",
            observation_files.len() + 1
        ));
        let mut out = create(&path)?;
        out.write_all(b"{\"type\":\"FeatureCollection\",\"features\":[\n")?;
        for i in 0..plan.observations.batch_size.max(1) {
            let Some(f) = stream.next() else { break };
            if i > 0 {
                out.write_all(b",\n")?;
            }
            serde_json::to_writer(&mut out, &f)?;
            written += 1;
        }
        out.write_all(b"\n]}\n")?;
        out.flush()?;
        observation_files.push(path);
    }
    Ok(GenReport {
        sites_file,
        sites: placements.len(),
        tsv_file,
        observation_files,
        observations: written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::parse_sites;
    use crate::model::IdPolicy;

    #[test]
    fn the_written_catalogue_reads_back_as_the_generated_sites() {
        let dir = tempfile::tempdir().unwrap();
        let plan = GenPlan {
            out_dir: dir.path().to_owned(),
            sites: 120,
            seed: 8,
            observations: ObservationPlan {
                observations: 250,
                batch_size: 100,
                busiest_site_events: 10,
                off_site_share: 0.1,
                seed: 8,
            },
            postgis_tsv: true,
        };
        let report = write_files(&plan).unwrap();
        let text = std::fs::read_to_string(&report.sites_file).unwrap();
        assert_eq!(
            parse_sites(&text, IdPolicy::Required).unwrap(),
            crate::synth::sites(120, 8)
        );
        assert_eq!(report.observation_files.len(), 3);
        assert_eq!(report.observations, 250);
        let last: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report.observation_files[2]).unwrap())
                .unwrap();
        assert_eq!(last["features"].as_array().unwrap().len(), 50);
        let tsv = std::fs::read_to_string(report.tsv_file.unwrap()).unwrap();
        let first = tsv.lines().next().unwrap();
        assert!(
            first.starts_with("syn-0000001\tSRID=4326;POLYGON(("),
            "{first}"
        );
        assert_eq!(tsv.lines().count(), 120);
    }
}
