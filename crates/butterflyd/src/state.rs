//! The configuration persisted across restarts: the API model as JSON, written atomically
//! (temporary file + rename) after every change that succeeded.

use std::io;
use std::path::{Path, PathBuf};

use butterfly_api::Model;

/// Where the configuration lives.
#[derive(Debug, Clone)]
pub struct StateStore {
    file: PathBuf,
}

impl StateStore {
    /// A store in `dir` (created if missing).
    pub fn open(dir: &Path) -> io::Result<StateStore> {
        std::fs::create_dir_all(dir)?;
        Ok(StateStore { file: dir.join("butterflyd.json") })
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The hand-over file beside it: the connection tables a stopping daemon leaves to the
    /// next start (see `handover`).
    pub fn handover_path(&self) -> PathBuf {
        self.file.with_extension("handover")
    }

    /// The saved model, if any. A corrupt file is an error naming it (never silently lost).
    pub fn load(&self) -> io::Result<Option<Model>> {
        match std::fs::read_to_string(&self.file) {
            Ok(text) => Model::from_json(&text).map(Some).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", self.file.display()))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Saves `model`, atomically and durably: the new file is on disk before it replaces the
    /// old one, and the rename is on disk before this returns (a power cut leaves one or the
    /// other, never an empty file).
    pub fn save(&self, model: &Model) -> io::Result<()> {
        use std::io::Write as _;
        let text = model.to_json().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let tmp = self.file.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.file)?;
        if let Some(dir) = self.file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        assert!(s.load().unwrap().is_none());
        let m = Model::new();
        s.save(&m).unwrap();
        assert!(s.load().unwrap().is_some());
        std::fs::write(s.path(), "{not json").unwrap();
        let e = s.load().unwrap_err();
        assert!(e.to_string().contains("butterflyd.json"));
    }
}
