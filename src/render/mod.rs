//! Composition of scene layers that are not on a plane, and screenshots.
//!
//! Generic over smithay renderers: the headless backend composites with pixman, the nested one
//! with GLES. Screenshots render the same elements into an offscreen buffer and read it back.

mod image;

pub use image::RgbaImage;

use std::time::Duration;

use smithay::backend::allocator::Fourcc;
use smithay::backend::renderer::damage::OutputDamageTracker;
use smithay::backend::renderer::element::memory::{MemoryRenderBuffer, MemoryRenderBufferRenderElement};
use smithay::backend::renderer::element::solid::SolidColorRenderElement;
use smithay::backend::renderer::element::surface::{render_elements_from_surface_tree, WaylandSurfaceRenderElement};
use smithay::backend::renderer::element::{AsRenderElements, Id, Kind};
use smithay::backend::renderer::utils::CommitCounter;
use smithay::backend::renderer::{
    Color32F, ExportMem, ImportAll, ImportMem, Offscreen, Renderer, Texture, TextureMapping,
};
use smithay::desktop::utils::{send_frames_surface_tree, OutputPresentationFeedback};
use smithay::output::Output;
use smithay::reexports::wayland_protocols::wp::presentation_time::server::wp_presentation_feedback;
use smithay::utils::{Monotonic, Physical, Point, Rectangle, Scale, Size, Time, Transform};
use smithay::wayland::presentation::Refresh;

use crate::scene::{CursorSource, LayerSource, Scene};

smithay::backend::renderer::element::render_elements! {
    pub OutputElement<R> where R: ImportAll + ImportMem;
    Surface = WaylandSurfaceRenderElement<R>,
    Solid = SolidColorRenderElement,
    Memory = MemoryRenderBufferRenderElement<R>,
}

/// Turns scenes into render elements; keeps the ids of vitrine's own elements stable across
/// frames so damage tracking sees them as the same element.
pub struct Painter {
    cursor_outline: Id,
    cursor_fill: Id,
    /// The video picture in memory (software decoding) as a render buffer, made once per picture.
    video: std::cell::RefCell<Option<Box<(crate::video::VideoFrame, MemoryRenderBuffer)>>>,
}

impl std::fmt::Debug for Painter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Painter")
    }
}

impl Default for Painter {
    fn default() -> Self {
        Painter { cursor_outline: Id::new(), cursor_fill: Id::new(), video: Default::default() }
    }
}

impl Painter {
    /// Render elements for a scene, front to back (smithay's order).
    pub fn elements<R>(&self, renderer: &mut R, scene: &Scene, scale: f64) -> Vec<OutputElement<R>>
    where
        R: Renderer + ImportAll + ImportMem,
        R::TextureId: Clone + Texture + Send + 'static,
    {
        let scale = Scale::from(scale);
        let mut elements = Vec::new();
        for layer in scene.layers.iter().rev() {
            match &layer.source {
                LayerSource::Client(window) => {
                    let loc = (layer.dst.loc - window.geometry().loc).to_physical_precise_round(scale);
                    elements.extend(window.render_elements::<OutputElement<R>>(renderer, loc, scale, layer.alpha));
                }
                LayerSource::Solid(color) => {
                    let geo = layer.dst.to_physical_precise_round(scale);
                    elements.push(OutputElement::Solid(SolidColorRenderElement::new(
                        Id::new(),
                        geo,
                        CommitCounter::default(),
                        *color,
                        Kind::Unspecified,
                    )));
                }
                LayerSource::Cursor(CursorSource::Default) => {
                    let tip = layer.dst.loc.to_physical_precise_round(scale);
                    let fill = Rectangle::<i32, Physical>::new(tip + Point::from((1, 1)), (8, 12).into());
                    let outline = Rectangle::<i32, Physical>::new(tip, (10, 14).into());
                    elements.push(OutputElement::Solid(SolidColorRenderElement::new(
                        self.cursor_fill.clone(),
                        fill,
                        CommitCounter::default(),
                        [1.0, 1.0, 1.0, 1.0],
                        Kind::Cursor,
                    )));
                    elements.push(OutputElement::Solid(SolidColorRenderElement::new(
                        self.cursor_outline.clone(),
                        outline,
                        CommitCounter::default(),
                        [0.0, 0.0, 0.0, 1.0],
                        Kind::Cursor,
                    )));
                }
                // Pictures in dmabufs are shown by a plane; pictures in memory are composited.
                LayerSource::Video(frame) => {
                    let Some(image) = &frame.image else { continue };
                    let mut cache = self.video.borrow_mut();
                    if !cache.as_ref().is_some_and(|c| c.0.same(frame)) {
                        let size = (frame.visible.0 as i32, frame.visible.1 as i32);
                        let buffer =
                            MemoryRenderBuffer::from_slice(image, Fourcc::Abgr8888, size, 1, Transform::Normal, None);
                        *cache = Some(Box::new((frame.clone(), buffer)));
                    }
                    let Some(cached) = cache.as_ref() else { continue };
                    let buffer = &cached.1;
                    let loc: Point<i32, Physical> = layer.dst.loc.to_physical_precise_round(scale);
                    match MemoryRenderBufferRenderElement::from_buffer(
                        renderer,
                        loc.to_f64(),
                        buffer,
                        None,
                        None,
                        Some(layer.dst.size),
                        Kind::Unspecified,
                    ) {
                        Ok(e) => elements.push(OutputElement::Memory(e)),
                        Err(err) => tracing::warn!(target: "video", ?err, "cannot upload the video picture"),
                    }
                }
                LayerSource::Cursor(CursorSource::Surface { surface, hotspot }) => {
                    let loc = (layer.dst.loc - *hotspot).to_physical_precise_round(scale);
                    elements.extend(render_elements_from_surface_tree::<R, OutputElement<R>>(
                        renderer,
                        surface,
                        loc,
                        scale,
                        layer.alpha,
                        Kind::Cursor,
                    ));
                }
            }
        }
        elements
    }
}

/// Render elements into a new offscreen buffer of `size` and read it back as RGBA.
pub fn capture<R, T>(
    renderer: &mut R,
    size: Size<i32, Physical>,
    elements: &[OutputElement<R>],
    background: [f32; 4],
) -> Result<RgbaImage, String>
where
    R: Renderer + ImportAll + ImportMem + Offscreen<T> + ExportMem,
    R::TextureId: Clone + Texture + Send + 'static,
{
    let buffer_size = size.to_logical(1).to_buffer(1, Transform::Normal);
    let mut target = renderer
        .create_buffer(Fourcc::Abgr8888, buffer_size)
        .map_err(|e| format!("cannot create an offscreen buffer: {e}"))?;
    let mut framebuffer = renderer.bind(&mut target).map_err(|e| format!("cannot bind the offscreen buffer: {e}"))?;
    let mut tracker = OutputDamageTracker::new(size, 1.0, Transform::Normal);
    tracker
        .render_output(renderer, &mut framebuffer, 0, elements, Color32F::from(background))
        .map_err(|e| format!("cannot render the screenshot: {e:?}"))?;
    let mapping = renderer
        .copy_framebuffer(&framebuffer, Rectangle::from_size(buffer_size), Fourcc::Abgr8888)
        .map_err(|e| format!("cannot read the screenshot back: {e}"))?;
    let flipped = mapping.flipped();
    let bytes = renderer.map_texture(&mapping).map_err(|e| format!("cannot map the screenshot: {e}"))?;
    let mut image = RgbaImage::from_raw(size.w as u32, size.h as u32, bytes.to_vec())
        .ok_or_else(|| "the renderer returned a buffer of the wrong size".to_string())?;
    if flipped {
        image.flip_vertically();
    }
    Ok(image)
}

/// After an output was repainted (or found unchanged): frame callbacks and presentation feedback
/// for everything on it.
pub fn post_repaint(output: &Output, scene: &Scene, now: Time<Monotonic>, refresh: Duration, seq: u64) {
    let elapsed = Duration::from(now);
    let mut feedback = OutputPresentationFeedback::new(output);
    for window in scene.windows() {
        window.send_frame(output, elapsed, Some(Duration::ZERO), |_, _| Some(output.clone()));
        window.take_presentation_feedback(
            &mut feedback,
            |_, _| Some(output.clone()),
            |_, _| wp_presentation_feedback::Kind::empty(),
        );
    }
    for layer in &scene.layers {
        if let LayerSource::Cursor(CursorSource::Surface { surface, .. }) = &layer.source {
            send_frames_surface_tree(surface, output, elapsed, Some(Duration::ZERO), |_, _| Some(output.clone()));
        }
    }
    feedback.presented(now, Refresh::Fixed(refresh), seq, wp_presentation_feedback::Kind::empty());
}
