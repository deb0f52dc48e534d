//! Composition of the layers that got no plane, into a buffer that itself goes on a plane:
//! with GLES into GBM buffers (EGL on the display device; Mesa's software rasterizer where there
//! is no GPU), or with pixman into CPU-mapped dumb buffers. `--renderer` chooses; `auto` tries
//! GLES first and says why it fell back.

use drm::control::framebuffer;
use smithay::backend::allocator::dmabuf::{AsDmabuf, Dmabuf};
use smithay::backend::allocator::gbm::{GbmAllocator, GbmBufferFlags, GbmDevice};
use smithay::backend::allocator::{Format, Fourcc, Modifier};
use smithay::backend::egl::{EGLContext, EGLDevice, EGLDisplay};
use smithay::backend::renderer::damage::OutputDamageTracker;
use smithay::backend::renderer::gles::{GlesRenderer, GlesTexture};
use smithay::backend::renderer::pixman::PixmanRenderer;
use smithay::backend::renderer::sync::SyncPoint;
use smithay::backend::renderer::{Bind, Color32F, ImportAll, ImportDma, ImportMem, Renderer, Texture};
use smithay::utils::{Physical, Rectangle};

use super::device::Card;
use super::kms::MappedBuffer;
use crate::image::RgbaImage;
use crate::render::{capture, OnPlanes, OutputElement, Painter};
use crate::scene::Scene;

/// What a composition drew: the damaged rectangles and the point where the GPU is done.
pub type Drawn = (Vec<Rectangle<i32, Physical>>, SyncPoint);

pub use crate::config::RendererChoice;

/// A buffer the composition is drawn into, with its framebuffer.
pub enum CompositionBuffer {
    /// A dumb buffer mapped for pixman.
    Dumb(MappedBuffer),
    /// A GBM buffer GLES renders into.
    Gbm { dmabuf: Dmabuf, fb: framebuffer::Handle },
}

impl CompositionBuffer {
    pub fn fb(&self) -> framebuffer::Handle {
        match self {
            CompositionBuffer::Dumb(b) => b.fb,
            CompositionBuffer::Gbm { fb, .. } => *fb,
        }
    }

    pub fn destroy(self, card: &Card) {
        match self {
            CompositionBuffer::Dumb(b) => b.destroy(card),
            CompositionBuffer::Gbm { fb, .. } => {
                let _ = drm::control::Device::destroy_framebuffer(card, fb);
            }
        }
    }
}

/// The card's fd as GBM holds it. (Not smithay's DrmDeviceFd: dropping that one gives up DRM
/// master, which the card shares with this duplicate.)
#[derive(Debug, Clone)]
struct SharedFd(std::sync::Arc<std::os::fd::OwnedFd>);

impl std::os::fd::AsFd for SharedFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

pub struct Gles {
    renderer: GlesRenderer,
    allocator: GbmAllocator<SharedFd>,
    /// Mesa's software rasterizer (no GPU): the CPU draws every composited pixel.
    software: bool,
}

pub enum Compositor {
    Pixman(PixmanRenderer),
    Gles(Box<Gles>),
}

impl Compositor {
    /// The renderer for `card`: GLES if asked for, or if `auto` finds a GPU behind EGL; else
    /// pixman (a software GL rasterizer is slower than pixman at composition).
    pub fn new(card: &Card, choice: RendererChoice) -> Result<Compositor, String> {
        if choice == RendererChoice::Auto && !has_render_node() {
            // No GPU driver at all (vkms, simpledrm...): not worth loading Mesa to find out.
            tracing::info!(device = %card.name(), "no GPU render node: compositing with pixman");
            return PixmanRenderer::new().map(Compositor::Pixman).map_err(|e| format!("pixman: {e}"));
        }
        if choice != RendererChoice::Pixman {
            match Gles::new(card, choice == RendererChoice::Gles) {
                Ok(gles) => return Ok(Compositor::Gles(Box::new(gles))),
                Err(err) if choice == RendererChoice::Gles => {
                    return Err(format!("{}: --renderer gles: {err}", card.name()))
                }
                Err(err) => {
                    tracing::info!(device = %card.name(), %err, "no GLES on the display device: compositing with pixman")
                }
            }
        }
        PixmanRenderer::new().map(Compositor::Pixman).map_err(|e| format!("pixman: {e}"))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Compositor::Pixman(_) => "pixman",
            Compositor::Gles(_) => "gles",
        }
    }

    /// Whether composition writes pixels with the CPU (counted as copies by the audit): pixman,
    /// or GL on a software rasterizer.
    pub fn copies(&self) -> bool {
        match self {
            Compositor::Pixman(_) => true,
            Compositor::Gles(g) => g.software,
        }
    }

    /// A composition buffer of `size` (ARGB8888, linear) with its framebuffer.
    pub fn new_buffer(&mut self, card: &Card, size: (u32, u32)) -> Result<CompositionBuffer, String> {
        match self {
            Compositor::Pixman(_) => MappedBuffer::new(card, size, true)
                .map(CompositionBuffer::Dumb)
                .map_err(|e| format!("{}: composition buffer: {e}", card.name())),
            Compositor::Gles(g) => {
                let bo = g
                    .allocator
                    .create_buffer_with_flags(
                        size.0,
                        size.1,
                        Fourcc::Argb8888,
                        &[Modifier::Linear],
                        GbmBufferFlags::SCANOUT | GbmBufferFlags::RENDERING,
                    )
                    .map_err(|e| format!("{}: GBM composition buffer: {e}", card.name()))?;
                let dmabuf = bo.export().map_err(|e| format!("{}: GBM buffer export: {e}", card.name()))?;
                let fb = super::scanout::add_framebuffer(card, &dmabuf)?;
                Ok(CompositionBuffer::Gbm { dmabuf, fb })
            }
        }
    }

    /// Draw what of `scene` is not on planes into `buffer`, clearing to `clear`. Returns the
    /// damage and the point where the GPU is done drawing, `None` when nothing changed.
    pub fn render(
        &mut self,
        painter: &Painter,
        buffer: &mut CompositionBuffer,
        damage: &mut OutputDamageTracker,
        scene: &Scene,
        skip: &OnPlanes,
        clear: [f32; 4],
    ) -> Result<Option<Drawn>, String> {
        match (self, buffer) {
            (Compositor::Pixman(r), CompositionBuffer::Dumb(b)) => {
                let mut image = b.image()?;
                draw(r, &mut image, painter, damage, scene, skip, clear)
            }
            (Compositor::Gles(g), CompositionBuffer::Gbm { dmabuf, .. }) => {
                draw(&mut g.renderer, dmabuf, painter, damage, scene, skip, clear)
            }
            _ => Err("the composition buffer does not belong to this renderer".into()),
        }
    }

    /// The scene rendered offscreen as a panel of `size` turned `rotation` shows it (screenshots
    /// where there is no writeback connector: the same picture a writeback would give).
    pub fn capture(
        &mut self,
        painter: &Painter,
        scene: &Scene,
        size: (u32, u32),
        rotation: crate::rotation::Rotation,
    ) -> Result<RgbaImage, String> {
        let size = (size.0 as i32, size.1 as i32).into();
        let transform = rotation.transform();
        match self {
            Compositor::Pixman(r) => {
                let elements = painter.elements(r, scene, 1.0);
                capture::<_, smithay::reexports::pixman::Image<'static, 'static>>(
                    r,
                    size,
                    transform,
                    &elements,
                    scene.background,
                )
            }
            Compositor::Gles(g) => {
                let elements = painter.elements(&mut g.renderer, scene, 1.0);
                capture::<_, GlesTexture>(&mut g.renderer, size, transform, &elements, scene.background)
            }
        }
    }

    pub fn dmabuf_formats(&self) -> Vec<Format> {
        match self {
            Compositor::Pixman(r) => r.dmabuf_formats().iter().copied().collect(),
            Compositor::Gles(g) => g.renderer.dmabuf_formats().iter().copied().collect(),
        }
    }

    /// Whether the renderer can composite this client dmabuf.
    pub fn import_dmabuf(&mut self, dmabuf: &Dmabuf) -> Result<(), String> {
        match self {
            Compositor::Pixman(r) => r.import_dmabuf(dmabuf, None).map(|_| ()).map_err(|e| e.to_string()),
            Compositor::Gles(g) => g.renderer.import_dmabuf(dmabuf, None).map(|_| ()).map_err(|e| e.to_string()),
        }
    }
}

impl Gles {
    /// GLES on `card`; a software rasterizer only when `allow_software`.
    fn new(card: &Card, allow_software: bool) -> Result<Gles, String> {
        let fd = card.as_file().try_clone().map_err(|e| format!("dup: {e}"))?;
        let gbm = GbmDevice::new(SharedFd(std::sync::Arc::new(fd.into()))).map_err(|e| format!("GBM: {e}"))?;
        // SAFETY: the GBM device outlives the display (the allocator keeps a clone of it).
        let display = unsafe { EGLDisplay::new(gbm.clone()) }.map_err(|e| format!("EGL display: {e}"))?;
        // Decided before any shader is compiled: under some emulated CPUs llvmpipe's JIT aborts
        // the process.
        let device_software = EGLDevice::device_for_display(&display).map(|d| d.is_software()).ok();
        if device_software == Some(true) && !allow_software {
            return Err("EGL runs on Mesa's software rasterizer (no GPU): pixman composites faster".into());
        }
        let context = EGLContext::new(&display).map_err(|e| format!("EGL context: {e}"))?;
        // SAFETY: the context is current only on this thread; vitrine renders on its main thread.
        let mut renderer = unsafe { GlesRenderer::new(context) }.map_err(|e| format!("GLES: {e}"))?;
        let name = gl_renderer_name(&mut renderer);
        let software =
            device_software == Some(true) || ["softpipe", "llvmpipe", "swrast"].iter().any(|s| name.contains(s));
        if software && !allow_software {
            return Err(format!("GL renderer {name} is a software rasterizer (no GPU): pixman composites faster"));
        }
        tracing::info!(device = %card.name(), gl_renderer = %name, software, "compositing with GLES (EGL on GBM)");
        let allocator = GbmAllocator::new(gbm, GbmBufferFlags::RENDERING | GbmBufferFlags::SCANOUT);
        Ok(Gles { renderer, allocator, software })
    }
}

/// Whether a GPU driver offers a render node (/dev/dri/renderD*). vgem's node renders nothing.
fn has_render_node() -> bool {
    let Ok(dir) = std::fs::read_dir("/dev/dri") else { return false };
    dir.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.starts_with("renderD")
            && std::fs::read_link(format!("/sys/class/drm/{name}/device/driver"))
                .map(|d| d.file_name().is_some_and(|n| n != "vgem"))
                .unwrap_or(true)
    })
}

/// GL_RENDERER, e.g. "Mali-G52 (Panfrost)" or "softpipe".
pub fn gl_renderer_name(renderer: &mut GlesRenderer) -> String {
    renderer
        .with_context(|gl| {
            // SAFETY: glGetString returns a static NUL-terminated string or null.
            let ptr = unsafe { gl.GetString(smithay::backend::renderer::gles::ffi::RENDERER) };
            if ptr.is_null() {
                String::new()
            } else {
                unsafe { std::ffi::CStr::from_ptr(ptr as *const _) }.to_string_lossy().into_owned()
            }
        })
        .unwrap_or_default()
}

/// Whether a renderer samples YUV dmabufs itself; otherwise pictures are converted on the CPU.
pub fn samples_yuv(compositor: &Compositor) -> bool {
    match compositor {
        Compositor::Pixman(_) => false,
        // Mesa 22's softpipe crashes sampling NV12 external images; a software rasterizer gains
        // nothing over vitrine's own conversion anyway.
        Compositor::Gles(g) => !g.software,
    }
}

/// Render into a bound target. The pixels are there once the returned sync point is reached:
/// the caller hands it to KMS as the plane's in-fence rather than waiting.
fn draw<R, T>(
    renderer: &mut R,
    target: &mut T,
    painter: &Painter,
    damage: &mut OutputDamageTracker,
    scene: &Scene,
    skip: &OnPlanes,
    clear: [f32; 4],
) -> Result<Option<Drawn>, String>
where
    R: Renderer + ImportAll + ImportMem + ImportDma + Bind<T> + crate::render::yuv::YuvDraw,
    R::TextureId: Clone + Texture + Send + 'static,
{
    let elements: Vec<OutputElement<R>> = painter.elements_except(renderer, scene, 1.0, skip);
    let mut fb = renderer.bind(target).map_err(|e| format!("cannot bind the composition buffer: {e}"))?;
    let result = damage
        .render_output(renderer, &mut fb, 1, &elements, Color32F::from(clear))
        .map_err(|e| format!("composition failed: {e:?}"))?;
    Ok(result.damage.cloned().map(|damage| (damage, result.sync.clone())))
}
