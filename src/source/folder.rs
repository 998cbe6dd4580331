//! A folder of images replayed in name order at a set rate: for replaying recorded passages and
//! for evaluation.

use chrono::Utc;
use std::path::PathBuf;

use super::{Frame, FrameSource, SourceError, SourceResult};
use crate::vision;

const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp"];

/// Replays the images of a folder.
pub struct FolderSource {
    dir: PathBuf,
    fps: f64,
    files: Vec<PathBuf>,
    next: usize,
}

impl FolderSource {
    pub fn new(dir: PathBuf, fps: f64) -> Self {
        Self {
            dir,
            fps,
            files: Vec::new(),
            next: 0,
        }
    }
}

/// The image files of `dir`, sorted by name.
pub fn list_images(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    Ok(files)
}

impl FrameSource for FolderSource {
    fn open(&mut self) -> Result<(), SourceError> {
        self.files = list_images(&self.dir)
            .map_err(|e| SourceError::Lost(format!("cannot list {}: {e}", self.dir.display())))?;
        if self.files.is_empty() {
            return Err(SourceError::Lost(format!(
                "{} holds no images (jpg, png, bmp)",
                self.dir.display()
            )));
        }
        self.next = 0;
        Ok(())
    }

    fn next_frame(&mut self) -> SourceResult {
        let Some(path) = self.files.get(self.next).cloned() else {
            return Ok(None);
        };
        self.next += 1;
        let t = (self.next - 1) as f64 / self.fps;
        match vision::read_image(&path) {
            Ok(image) => Ok(Some(Frame {
                image,
                t,
                captured_at: Utc::now(),
                index: self.next as u64,
            })),
            Err(e) if !self.dir.is_dir() => Err(SourceError::Lost(format!(
                "{} is gone: {e:#}",
                self.dir.display()
            ))),
            Err(e) => Err(SourceError::BadFrame(format!("{e:#}"))),
        }
    }

    fn is_live(&self) -> bool {
        false
    }

    fn fps(&self) -> Option<f64> {
        Some(self.fps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_in_name_order_and_skips_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let img = opencv::core::Mat::new_rows_cols_with_default(
            32,
            32,
            opencv::core::CV_8UC3,
            opencv::core::Scalar::all(0.0),
        )
        .unwrap();
        for name in ["b.png", "a.png"] {
            opencv::imgcodecs::imwrite_def(dir.path().join(name).to_str().unwrap(), &img).unwrap();
        }
        std::fs::write(dir.path().join("c.jpg"), b"garbage").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        let mut src = FolderSource::new(dir.path().to_owned(), 10.0);
        src.open().unwrap();
        let f1 = src.next_frame().unwrap().unwrap();
        let f2 = src.next_frame().unwrap().unwrap();
        assert_eq!((f1.t, f2.t), (0.0, 0.1));
        assert!(matches!(src.next_frame(), Err(SourceError::BadFrame(_))));
        assert!(src.next_frame().unwrap().is_none());
    }

    #[test]
    fn an_empty_or_missing_folder_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            FolderSource::new(dir.path().into(), 1.0).open(),
            Err(SourceError::Lost(_))
        ));
        assert!(matches!(
            FolderSource::new("/nonexistent".into(), 1.0).open(),
            Err(SourceError::Lost(_))
        ));
    }
}
