//! Composition of scene layers that are not on a plane, and screenshots.
//!
//! Generic over smithay renderers: the headless backend composites with pixman, the nested one
//! with GLES. Screenshots render the same elements into an offscreen buffer and read it back.

use crate::image::RgbaImage;

use std::time::Duration;

use smithay::backend::allocator::Fourcc;
use smithay::backend::renderer::damage::OutputDamageTracker;
use smithay::backend::renderer::element::memory::{MemoryRenderBuffer, MemoryRenderBufferRenderElement};
use smithay::backend::renderer::element::solid::SolidColorRenderElement;
use smithay::backend::renderer::element::surface::{render_elements_from_surface_tree, WaylandSurfaceRenderElement};
use smithay::backend::renderer::element::texture::TextureRenderElement;
use smithay::backend::renderer::element::{AsRenderElements, Id, Kind};
use smithay::backend::renderer::utils::{CommitCounter, RendererSurfaceStateUserData};
use smithay::backend::renderer::{Color32F, ExportMem, ImportAll, ImportDma, ImportMem, Offscreen, Renderer, Texture};
use smithay::desktop::utils::{send_frames_surface_tree, OutputPresentationFeedback};
use smithay::output::Output;
use smithay::reexports::wayland_protocols::wp::presentation_time::server::wp_presentation_feedback;
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::utils::{Monotonic, Physical, Point, Rectangle, Scale, Size, Time, Transform};
use smithay::wayland::compositor::{with_surface_tree_downward, TraversalAction};
use smithay::wayland::presentation::Refresh;

use crate::scene::{CursorSource, LayerSource, Scene};

pub mod yuv;

use yuv::{PlaneViews, YuvDraw, YuvElement};

smithay::backend::renderer::element::render_elements! {
    pub OutputElement<R> where R: ImportAll + ImportMem + YuvDraw;
    Surface = WaylandSurfaceRenderElement<R>,
    Solid = SolidColorRenderElement,
    Memory = MemoryRenderBufferRenderElement<R>,
    Texture = TextureRenderElement<<R as smithay::backend::renderer::RendererSuper>::TextureId>,
    Yuv = YuvElement<<R as smithay::backend::renderer::RendererSuper>::TextureId>,
}

/// Turns scenes into render elements; keeps the ids of vitrine's own elements stable across
/// frames so damage tracking sees them as the same element.
pub struct Painter {
    cursor_outline: Id,
    cursor_fill: Id,
    /// The video picture in memory as a render buffer, made once per picture (Weak: the painter
    /// must not keep a decoder buffer from going back to the decoder).
    video: std::cell::RefCell<Option<(std::sync::Weak<crate::video::FrameToken>, MemoryRenderBuffer)>>,
    /// Decoded pictures in dmabufs are converted to RGB on the CPU (the renderer cannot sample
    /// YUV: pixman, or a software rasterizer).
    yuv_on_cpu: std::cell::Cell<bool>,
    /// The background image as a render buffer (made once per image).
    background: std::cell::RefCell<Option<(std::sync::Weak<RgbaImage>, MemoryRenderBuffer)>>,
    /// CPU mappings made of decoded pictures, and bytes copied converting them.
    mappings: std::cell::Cell<u64>,
    copied: std::cell::Cell<u64>,
    /// The element id of the video picture composited from its dmabuf: a new id per picture, so
    /// damage tracking redraws it when the picture changes.
    /// (Weak: the painter must not keep a decoder buffer from going back to the decoder.)
    video_texture: std::cell::RefCell<Option<(std::sync::Weak<crate::video::FrameToken>, Id)>>,
    /// A decoded picture the renderer could not import was reported (once per size and format).
    video_import_failed: std::cell::Cell<bool>,
    /// Decoded pictures' planes as dmabufs of their own, for the GPU's conversion.
    plane_views: std::cell::RefCell<PlaneViews>,
    /// The renderer could not import a picture's planes (reported once; not tried again).
    planes_failed: std::cell::Cell<bool>,
}

impl std::fmt::Debug for Painter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Painter")
    }
}

impl Default for Painter {
    fn default() -> Self {
        Painter {
            cursor_outline: Id::new(),
            cursor_fill: Id::new(),
            video: Default::default(),
            yuv_on_cpu: std::cell::Cell::new(true),
            background: Default::default(),
            mappings: Default::default(),
            copied: Default::default(),
            video_texture: Default::default(),
            video_import_failed: Default::default(),
            plane_views: Default::default(),
            planes_failed: Default::default(),
        }
    }
}

/// What a composition leaves out because hardware planes show it.
#[derive(Debug, Default, Clone)]
pub struct OnPlanes {
    /// Client surfaces on planes.
    pub surfaces: Vec<WlSurface>,
    /// The video picture is on a plane.
    pub video: bool,
}

impl Painter {
    /// Render elements for a scene, front to back (smithay's order).
    pub fn elements<R>(&self, renderer: &mut R, scene: &Scene, scale: f64) -> Vec<OutputElement<R>>
    where
        R: Renderer + ImportAll + ImportMem + YuvDraw + ImportDma,
        R::TextureId: Clone + Texture + Send + 'static,
    {
        self.elements_except(renderer, scene, scale, &OnPlanes::default())
    }

    /// Render elements for what of `scene` is not on planes. Buffers on planes are not even
    /// imported by the renderer (an import may map them, or fail, every frame).
    pub fn elements_except<R>(
        &self,
        renderer: &mut R,
        scene: &Scene,
        scale: f64,
        on_planes: &OnPlanes,
    ) -> Vec<OutputElement<R>>
    where
        R: Renderer + ImportAll + ImportMem + YuvDraw + ImportDma,
        R::TextureId: Clone + Texture + Send + 'static,
    {
        let scale = Scale::from(scale);
        // Pictures whose decoder buffers are gone let go of their planes' views and textures
        // (they hold the buffers' memory).
        self.plane_views.borrow_mut().prune();
        renderer.forget_gone_planes();
        let mut elements = Vec::new();
        for layer in scene.layers.iter().rev() {
            match &layer.source {
                LayerSource::Client(window) => {
                    let loc = (layer.dst.loc - window.geometry().loc).to_physical_precise_round(scale);
                    let root = window.toplevel().map(|t| t.wl_surface().clone());
                    let planed = !on_planes.surfaces.is_empty()
                        && root
                            .as_ref()
                            .is_some_and(|root| surface_tree(root).iter().any(|s| on_planes.surfaces.contains(s)));
                    match root {
                        // Some of the window's surfaces are on planes (such windows have no
                        // popups): the rest, surface by surface.
                        Some(root) if planed => elements.extend(surface_elements_except(
                            renderer,
                            &root,
                            loc,
                            scale,
                            layer.alpha,
                            &on_planes.surfaces,
                        )),
                        _ => elements.extend(window.render_elements::<OutputElement<R>>(
                            renderer,
                            loc,
                            scale,
                            layer.alpha,
                        )),
                    }
                }
                LayerSource::Shell(surface) => {
                    let loc = (layer.dst.loc - surface.bbox().loc).to_physical_precise_round(scale);
                    let root = surface.wl_surface();
                    if !on_planes.surfaces.is_empty()
                        && surface_tree(root).iter().any(|s| on_planes.surfaces.contains(s))
                    {
                        // Some of its surfaces are on planes (it has no popups then): the rest.
                        elements.extend(surface_elements_except(
                            renderer,
                            root,
                            loc,
                            scale,
                            layer.alpha,
                            &on_planes.surfaces,
                        ));
                    } else {
                        // Composited whole, popups included.
                        elements.extend(smithay::backend::renderer::element::AsRenderElements::<R>::render_elements::<
                            OutputElement<R>,
                        >(surface, renderer, loc, scale, layer.alpha));
                    }
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
                // A decoded picture no plane shows: sampled by a GPU renderer from its dmabuf as
                // EGL samples YUV by default (BT.601 limited); a picture of another colour is
                // converted by vitrine's shader from the dmabuf's planes with its own matrix and
                // range, or where that cannot be, on the CPU (a mapping and a copy, counted;
                // under `[video] colour = "fast"`, by EGL's default instead). A renderer that
                // cannot sample YUV converts on the CPU.
                LayerSource::Video(_) if on_planes.video => {}
                LayerSource::Video(frame) => {
                    let egl_right = frame.colour == crate::video::colour::Colour::EGL_DEFAULT;
                    let fast = scene.colour == crate::config::ColourPolicy::Fast;
                    let gpu = frame.dmabuf.is_some() && !self.yuv_on_cpu.get();
                    let element = (!egl_right)
                        .then(|| self.video_planes_element(renderer, frame, layer.dst, scale))
                        .flatten()
                        .or_else(|| {
                            (gpu && (egl_right || fast))
                                .then(|| self.video_texture_element(renderer, frame, layer.dst, scale))
                                .flatten()
                        })
                        .or_else(|| self.video_memory_element(renderer, frame, layer.dst, scale));
                    elements.extend(element);
                }
                LayerSource::Image(image) => {
                    if let Some(e) = self.image_element(renderer, image, layer.dst, scale) {
                        elements.push(e);
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
                LayerSource::ImePopup(surface) => {
                    elements.extend(render_elements_from_surface_tree::<R, OutputElement<R>>(
                        renderer,
                        surface,
                        layer.dst.loc.to_physical_precise_round(scale),
                        scale,
                        layer.alpha,
                        Kind::Unspecified,
                    ));
                }
            }
        }
        elements
    }
}

/// An element drawing (the `src` part of) a memory buffer into `dst`; upload errors are logged.
fn memory_element<R>(
    renderer: &mut R,
    buffer: &MemoryRenderBuffer,
    src: Option<Rectangle<f64, smithay::utils::Logical>>,
    dst: Rectangle<i32, smithay::utils::Logical>,
    scale: Scale<f64>,
    what: &str,
) -> Option<OutputElement<R>>
where
    R: Renderer + ImportAll + ImportMem + YuvDraw,
    R::TextureId: Clone + Texture + Send + 'static,
{
    let loc: Point<i32, Physical> = dst.loc.to_physical_precise_round(scale);
    MemoryRenderBufferRenderElement::from_buffer(
        renderer,
        loc.to_f64(),
        buffer,
        None,
        src,
        Some(dst.size),
        Kind::Unspecified,
    )
    .map(OutputElement::Memory)
    .map_err(|err| tracing::warn!(?err, "cannot upload {what}"))
    .ok()
}

/// Whether `held` refers to the picture of `frame`.
fn same_picture(held: &std::sync::Weak<crate::video::FrameToken>, frame: &crate::video::VideoFrame) -> bool {
    held.upgrade().is_some_and(|h| std::sync::Arc::ptr_eq(&h, &frame.hold))
}

impl Painter {
    /// Whether decoded pictures in dmabufs are converted on the CPU (true) or sampled by the
    /// renderer from the dmabuf (a GPU renderer).
    pub fn set_yuv_on_cpu(&self, on_cpu: bool) {
        self.yuv_on_cpu.set(on_cpu);
    }

    /// CPU mappings made of decoded pictures and the bytes copied converting them, so far.
    pub fn copies(&self) -> (u64, u64) {
        (self.mappings.get(), self.copied.get())
    }

    /// The background image filling `dst`: scaled to cover it, the overflow cropped evenly.
    fn image_element<R>(
        &self,
        renderer: &mut R,
        image: &std::sync::Arc<RgbaImage>,
        dst: Rectangle<i32, smithay::utils::Logical>,
        scale: Scale<f64>,
    ) -> Option<OutputElement<R>>
    where
        R: Renderer + ImportAll + ImportMem + YuvDraw,
        R::TextureId: Clone + Texture + Send + 'static,
    {
        let mut cache = self.background.borrow_mut();
        let current =
            cache.as_ref().is_some_and(|(held, _)| held.upgrade().is_some_and(|h| std::sync::Arc::ptr_eq(&h, image)));
        if !current {
            let size = (image.width as i32, image.height as i32);
            let buffer =
                MemoryRenderBuffer::from_slice(&image.data, Fourcc::Abgr8888, size, 1, Transform::Normal, None);
            *cache = Some((std::sync::Arc::downgrade(image), buffer));
        }
        let (_, buffer) = cache.as_ref()?;
        let (iw, ih) = (image.width.max(1) as f64, image.height.max(1) as f64);
        let (dw, dh) = (dst.size.w.max(1) as f64, dst.size.h.max(1) as f64);
        // The largest part of the image with the destination's shape, centred.
        let (sw, sh) = if iw / ih > dw / dh { (ih * dw / dh, ih) } else { (iw, iw * dh / dw) };
        let src = Rectangle::new(((iw - sw) / 2.0, (ih - sh) / 2.0).into(), (sw, sh).into());
        memory_element(renderer, buffer, Some(src), dst, scale, "the background image")
    }

    /// The picture of `frame` in memory (converted from its dmabuf on the CPU when it is in one)
    /// drawn into `dst`.
    fn video_memory_element<R>(
        &self,
        renderer: &mut R,
        frame: &crate::video::VideoFrame,
        dst: Rectangle<i32, smithay::utils::Logical>,
        scale: Scale<f64>,
    ) -> Option<OutputElement<R>>
    where
        R: Renderer + ImportAll + ImportMem + YuvDraw,
        R::TextureId: Clone + Texture + Send + 'static,
    {
        let mut cache = self.video.borrow_mut();
        if !cache.as_ref().is_some_and(|(held, _)| same_picture(held, frame)) {
            let size = (frame.visible.0 as i32, frame.visible.1 as i32);
            let converted;
            let bytes: &[u8] = match (&frame.image, &frame.dmabuf) {
                (Some(image), _) => image,
                (None, Some(dmabuf)) => {
                    match crate::video::convert::dmabuf_nv12_to_rgba(dmabuf, frame.visible, frame.colour) {
                        Ok(rgba) => {
                            self.mappings.set(self.mappings.get() + 1);
                            self.copied.set(self.copied.get() + rgba.len() as u64);
                            converted = rgba;
                            &converted
                        }
                        Err(err) => {
                            if !self.video_import_failed.replace(true) {
                                tracing::warn!(target: "video", %err, "the decoded picture cannot be composited");
                            }
                            return None;
                        }
                    }
                }
                (None, None) => return None,
            };
            let buffer = MemoryRenderBuffer::from_slice(bytes, Fourcc::Abgr8888, size, 1, Transform::Normal, None);
            *cache = Some((std::sync::Arc::downgrade(&frame.hold), buffer));
        }
        let (_, buffer) = cache.as_ref()?;
        // The whole picture as the source: without one, smithay takes the destination's size
        // as the source's and a scaled picture would be cropped instead.
        let whole = Rectangle::from_size((frame.visible.0 as f64, frame.visible.1 as f64).into());
        memory_element(renderer, buffer, Some(whole), dst, scale, "the video picture")
    }

    /// The decoded picture of `frame` as a texture drawn into `dst`.
    /// The element id of `frame` composited from its dmabuf: a new one per picture.
    fn picture_id(&self, frame: &crate::video::VideoFrame) -> Id {
        let mut cached = self.video_texture.borrow_mut();
        match cached.as_ref() {
            Some((held, id)) if same_picture(held, frame) => id.clone(),
            _ => {
                let id = Id::new();
                *cached = Some((std::sync::Arc::downgrade(&frame.hold), id.clone()));
                id
            }
        }
    }

    /// `frame` converted by the renderer from its planes (see `yuv`), where it can.
    fn video_planes_element<R>(
        &self,
        renderer: &mut R,
        frame: &crate::video::VideoFrame,
        dst: Rectangle<i32, smithay::utils::Logical>,
        scale: Scale<f64>,
    ) -> Option<OutputElement<R>>
    where
        R: Renderer + ImportAll + ImportMem + YuvDraw,
        R::TextureId: Clone + Texture + Send + 'static,
    {
        // Not on a software rasterizer: Mesa 22's softpipe crashes sampling dmabuf textures
        // (external or 2D alike), and gains nothing over the CPU's conversion.
        if !R::DRAWS_PLANES || self.yuv_on_cpu.get() || self.planes_failed.get() {
            return None;
        }
        let views = self.plane_views.borrow_mut().of(frame.dmabuf.as_ref()?)?;
        let planes = match renderer.import_planes(&views)? {
            Ok(planes) => planes,
            Err(err) => {
                tracing::warn!(
                    target: "video",
                    %err,
                    "the renderer cannot convert pictures from their planes: composited pictures are sampled by EGL or converted on the CPU"
                );
                self.planes_failed.set(true);
                return None;
            }
        };
        let geometry =
            Rectangle::new(dst.loc.to_physical_precise_round(scale), dst.size.to_physical_precise_round(scale));
        let src = Rectangle::from_size((frame.visible.0 as f64, frame.visible.1 as f64).into());
        Some(OutputElement::Yuv(YuvElement::new(self.picture_id(frame), geometry, src, planes, frame.colour)))
    }

    fn video_texture_element<R>(
        &self,
        renderer: &mut R,
        frame: &crate::video::VideoFrame,
        dst: Rectangle<i32, smithay::utils::Logical>,
        scale: Scale<f64>,
    ) -> Option<OutputElement<R>>
    where
        R: Renderer + ImportAll + ImportMem + YuvDraw + ImportDma,
        R::TextureId: Clone + Texture + Send + 'static,
    {
        let dmabuf = frame.dmabuf.as_ref()?;
        let texture = match renderer.import_dmabuf(dmabuf, None) {
            Ok(t) => t,
            Err(err) => {
                if !self.video_import_failed.replace(true) {
                    tracing::warn!(
                        target: "video",
                        %err,
                        "the renderer cannot import the decoded picture: it is not shown where no plane takes it"
                    );
                }
                return None;
            }
        };
        let visible = Rectangle::from_size((frame.visible.0 as f64, frame.visible.1 as f64).into());
        let id = self.picture_id(frame);
        Some(OutputElement::Texture(TextureRenderElement::from_static_texture(
            id,
            renderer.context_id(),
            dst.loc.to_physical_precise_round::<_, i32>(scale).to_f64(),
            texture,
            1,
            Transform::Normal,
            None,
            Some(visible),
            Some(dst.size),
            // NV12 video is opaque.
            Some(vec![Rectangle::from_size((frame.visible.0 as i32, frame.visible.1 as i32).into())]),
            Kind::Unspecified,
        )))
    }
}

/// Every surface of the tree under `root` (root included).
fn surface_tree(root: &WlSurface) -> Vec<WlSurface> {
    let mut out = Vec::new();
    with_surface_tree_downward(
        root,
        (),
        |_, _, _| TraversalAction::DoChildren(()),
        |s, _, _| out.push(s.clone()),
        |_, _, _| true,
    );
    out
}

/// The render elements of a surface tree but the surfaces in `skip`, in smithay's order.
fn surface_elements_except<R>(
    renderer: &mut R,
    root: &WlSurface,
    location: Point<i32, Physical>,
    scale: Scale<f64>,
    alpha: f32,
    skip: &[WlSurface],
) -> Vec<OutputElement<R>>
where
    R: Renderer + ImportAll + ImportMem + YuvDraw,
    R::TextureId: Clone + Texture + Send + 'static,
{
    let view_offset = |states: &smithay::wayland::compositor::SurfaceData| {
        states
            .data_map
            .get::<RendererSurfaceStateUserData>()
            .and_then(|d| d.lock().ok().and_then(|d| d.view()).map(|v| v.offset.to_f64().to_physical(scale)))
    };
    let mut out = Vec::new();
    with_surface_tree_downward(
        root,
        location.to_f64(),
        |_, states, location| match view_offset(states) {
            Some(offset) => TraversalAction::DoChildren(*location + offset),
            None => TraversalAction::SkipChildren,
        },
        |surface, states, location| {
            let Some(offset) = view_offset(states) else { return };
            if skip.contains(surface) {
                return;
            }
            match WaylandSurfaceRenderElement::from_surface(
                renderer,
                surface,
                states,
                *location + offset,
                alpha,
                Kind::Unspecified,
            ) {
                Ok(Some(e)) => out.push(OutputElement::Surface(e)),
                Ok(None) => {}
                Err(err) => tracing::debug!(%err, "cannot import a surface for composition"),
            }
        },
        |_, _, _| true,
    );
    out
}

/// Render elements into a new offscreen buffer of `size` (the panel's, in pixels) turned as the
/// panel is (`transform`), and read it back as RGBA: what the display shows, as a writeback
/// connector reads it and as wlr-screencopy describes a frame.
pub fn capture<R, T>(
    renderer: &mut R,
    size: Size<i32, Physical>,
    transform: Transform,
    elements: &[OutputElement<R>],
    background: [f32; 4],
) -> Result<RgbaImage, String>
where
    R: Renderer + ImportAll + ImportMem + YuvDraw + ImportDma + Offscreen<T> + ExportMem,
    R::TextureId: Clone + Texture + Send + 'static,
{
    let buffer_size = size.to_logical(1).to_buffer(1, Transform::Normal);
    let mut target = renderer
        .create_buffer(Fourcc::Abgr8888, buffer_size)
        .map_err(|e| format!("cannot create an offscreen buffer: {e}"))?;
    let mut framebuffer = renderer.bind(&mut target).map_err(|e| format!("cannot bind the offscreen buffer: {e}"))?;
    let mut tracker = OutputDamageTracker::new(size, 1.0, transform);
    tracker
        .render_output(renderer, &mut framebuffer, 0, elements, Color32F::from(background))
        .map_err(|e| format!("cannot render the screenshot: {e:?}"))?;
    let mapping = renderer
        .copy_framebuffer(&framebuffer, Rectangle::from_size(buffer_size), Fourcc::Abgr8888)
        .map_err(|e| format!("cannot read the screenshot back: {e}"))?;
    // Rows come top first from both renderers. (GLES says its mappings are flipped, as GL's rows
    // are bottom first, but smithay already draws an offscreen target upside down in GL's terms:
    // turning it again made every nested screenshot upside down.)
    let bytes = renderer.map_texture(&mapping).map_err(|e| format!("cannot map the screenshot: {e}"))?;
    RgbaImage::from_raw(size.w as u32, size.h as u32, bytes.to_vec())
        .ok_or_else(|| "the renderer returned a buffer of the wrong size".to_string())
}

/// An output showed `scene` at `at` (a page flip, a virtual vblank, or the vblank a frame that
/// changed nothing would have been shown at): frame callbacks and presentation feedback for
/// everything on it. `seq` is the output's vblank count.
pub fn post_repaint(output: &Output, scene: &Scene, at: std::time::Instant, refresh: Duration, seq: u64) {
    let now: Time<Monotonic> = crate::clock::monotonic(at).into();
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
    for surface in scene.shell_surfaces() {
        surface.send_frame(output, elapsed, Some(Duration::ZERO), |_, _| Some(output.clone()));
        surface.take_presentation_feedback(
            &mut feedback,
            |_, _| Some(output.clone()),
            |_, _| wp_presentation_feedback::Kind::empty(),
        );
    }
    for layer in &scene.layers {
        if let LayerSource::Cursor(CursorSource::Surface { surface, .. }) | LayerSource::ImePopup(surface) =
            &layer.source
        {
            send_frames_surface_tree(surface, output, elapsed, Some(Duration::ZERO), |_, _| Some(output.clone()));
        }
    }
    feedback.presented(now, Refresh::Fixed(refresh), seq, wp_presentation_feedback::Kind::empty());
}
