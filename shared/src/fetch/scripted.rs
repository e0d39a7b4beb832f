//! A scripted [`Origin`]: each `open` plays the next script, step by step, so a test can
//! say exactly what a source does (chunks, a broken connection it resumes, a resume it
//! cannot make, a failure, a stall) and count what the transfer asked of it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use url::Url;

use super::{Origin, ResumeMismatch, SourceError, VideoSource};

/// Makes the error a step fails with (errors are not `Clone`), given the offset reached.
pub type MakeError = Arc<dyn Fn(u64) -> SourceError + Send + Sync>;

/// One thing a source does.
#[derive(Clone)]
pub enum Step {
    /// Delivers these bytes.
    Chunk(Bytes),
    /// The connection broke and the source resumed where it was (one ranged request).
    Cut,
    /// Waits this long before the next step.
    Stall(Duration),
    /// Fails with this error (the source cannot go on).
    Fail(MakeError),
    /// As the first step: `open` itself fails with this error.
    RefuseOpen(MakeError),
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Chunk(b) => write!(f, "Chunk({} bytes)", b.len()),
            Self::Cut => f.write_str("Cut"),
            Self::Stall(d) => write!(f, "Stall({d:?})"),
            Self::Fail(_) => f.write_str("Fail"),
            Self::RefuseOpen(_) => f.write_str("RefuseOpen"),
        }
    }
}

impl Step {
    /// The source will not continue where it stopped (the transfer must restart).
    pub fn cannot_resume() -> Self {
        Self::Fail(Arc::new(|offset| SourceError::CannotResume {
            offset,
            mismatch: ResumeMismatch::NotPartial(200),
        }))
    }

    /// `open` answers this HTTP status.
    pub fn refuse_with_status(status: u16) -> Self {
        Self::RefuseOpen(Arc::new(move |_| {
            SourceError::Status(
                reqwest::StatusCode::from_u16(status)
                    .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR),
            )
        }))
    }
}

/// `bytes` as chunks of `chunk` bytes, with a [`Step::Cut`] after byte `cut_at` if given.
pub fn chunks(bytes: &[u8], chunk: usize, cut_at: Option<usize>) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let mut end = (pos + chunk.max(1)).min(bytes.len());
        if let Some(cut) = cut_at.filter(|&c| c > pos && c < end) {
            end = cut;
        }
        steps.push(Step::Chunk(Bytes::copy_from_slice(&bytes[pos..end])));
        if cut_at == Some(end) {
            steps.push(Step::Cut);
        }
        pos = end;
    }
    steps
}

/// Plays one script per `open`, in order.
#[derive(Debug, Default)]
pub struct ScriptedOrigin {
    scripts: Mutex<VecDeque<Vec<Step>>>,
    opens: AtomicUsize,
}

impl ScriptedOrigin {
    pub fn new(scripts: impl IntoIterator<Item = Vec<Step>>) -> Self {
        Self {
            scripts: Mutex::new(scripts.into_iter().collect()),
            opens: AtomicUsize::new(0),
        }
    }

    /// How many times the source was opened (attempts from byte 0).
    pub fn opens(&self) -> usize {
        self.opens.load(Ordering::SeqCst)
    }
}

impl Origin for ScriptedOrigin {
    type Source = ScriptedSource;

    async fn open(&self, _url: &Url) -> Result<ScriptedSource, SourceError> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        let script = self
            .scripts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
            .unwrap_or_default();
        let mut steps: VecDeque<Step> = script.into();
        if let Some(Step::RefuseOpen(make)) = steps.front() {
            return Err(make(0));
        }
        if let Some(Step::Stall(delay)) = steps.front() {
            tokio::time::sleep(*delay).await;
            steps.pop_front();
        }
        Ok(ScriptedSource {
            steps,
            offset: 0,
            ranged_requests: 0,
        })
    }
}

/// One opened script.
#[derive(Debug)]
pub struct ScriptedSource {
    steps: VecDeque<Step>,
    offset: u64,
    ranged_requests: u32,
}

impl VideoSource for ScriptedSource {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, SourceError> {
        loop {
            match self.steps.pop_front() {
                None => return Ok(None),
                Some(Step::Chunk(bytes)) => {
                    self.offset += bytes.len() as u64;
                    return Ok(Some(bytes));
                }
                Some(Step::Cut) => self.ranged_requests += 1,
                Some(Step::Stall(delay)) => tokio::time::sleep(delay).await,
                Some(Step::Fail(make) | Step::RefuseOpen(make)) => return Err(make(self.offset)),
            }
        }
    }

    fn offset(&self) -> u64 {
        self.offset
    }

    fn ranged_requests(&self) -> u32 {
        self.ranged_requests
    }
}
