//! Templates: tera pages and e-mails from templates/, compiled into the binary
//! (no files needed at run time). API contract skeleton.

/// The compiled template set.
pub struct Templates {
    _private: (),
}

#[derive(Debug, thiserror::Error)]
#[error("template {name}: {message}")]
pub struct RenderError {
    pub name: String,
    pub message: String,
}

#[allow(unused_variables)]
impl Templates {
    /// Parses every embedded template; fails at start-up, never per request.
    pub fn load() -> Result<Templates, RenderError> {
        todo!()
    }

    pub fn render(&self, name: &str, ctx: &tera::Context) -> Result<String, RenderError> {
        todo!()
    }
}
