//! Decoded pictures composited by the GPU with their own matrix and range. EGL's YUV import
//! samples with its defaults (BT.601 limited; smithay passes it no colour hints), so instead each
//! plane of the NV12 dmabuf is imported as a 2D texture of its own (R8 luma, GR88 chroma, the
//! same memory, no copy) and vitrine's shader converts with the picture's coefficients, the
//! numbers the CPU conversion and the planes use. The textures are made once per decoder buffer.

use std::cell::RefCell;

use smithay::backend::allocator::dmabuf::{Dmabuf, DmabufFlags, WeakDmabuf};
use smithay::backend::allocator::{Buffer as _, Fourcc};
use smithay::backend::renderer::element::{Element, Id, RenderElement};
use smithay::backend::renderer::gles::{
    ffi, GlesError, GlesFrame, GlesRenderer, GlesTexProgram, GlesTexture, Uniform, UniformName, UniformType,
    UniformValue,
};
use smithay::backend::renderer::pixman::{PixmanError, PixmanRenderer, PixmanTexture};
use smithay::backend::renderer::utils::{CommitCounter, OpaqueRegions};
use smithay::backend::renderer::Renderer;
use smithay::utils::{Buffer, Physical, Rectangle, Scale, Transform};

use crate::video::colour::Colour;

/// A picture's two planes as textures, drawn converted into `geometry`.
#[derive(Debug)]
pub struct YuvElement<T> {
    id: Id,
    geometry: Rectangle<i32, Physical>,
    src: Rectangle<f64, Buffer>,
    luma: T,
    chroma: T,
    colour: Colour,
}

/// Imported planes: luma and chroma.
pub struct Planes<T> {
    pub luma: T,
    pub chroma: T,
}

impl<T> YuvElement<T> {
    pub fn new(
        id: Id,
        geometry: Rectangle<i32, Physical>,
        src: Rectangle<f64, Buffer>,
        planes: Planes<T>,
        colour: Colour,
    ) -> Self {
        YuvElement { id, geometry, src, luma: planes.luma, chroma: planes.chroma, colour }
    }
}

impl<T> Element for YuvElement<T> {
    fn id(&self) -> &Id {
        &self.id
    }
    // A new id per picture (as for the other video elements): the commit never changes.
    fn current_commit(&self) -> CommitCounter {
        CommitCounter::default()
    }
    fn src(&self) -> Rectangle<f64, Buffer> {
        self.src
    }
    fn geometry(&self, _: Scale<f64>) -> Rectangle<i32, Physical> {
        self.geometry
    }
    // NV12 has no alpha.
    fn opaque_regions(&self, _: Scale<f64>) -> OpaqueRegions<i32, Physical> {
        OpaqueRegions::from_slice(&[Rectangle::from_size(self.geometry.size)])
    }
}

/// A renderer that can composite a picture from its planes.
pub trait YuvDraw: Renderer + Sized {
    /// Whether this renderer draws pictures from their planes at all.
    const DRAWS_PLANES: bool;

    /// Drop the textures of planes whose views are gone.
    fn forget_gone_planes(&mut self) {}

    /// Import the planes of an NV12 picture (`planes`: the same memory described as R8 and GR88)
    /// as textures; `None` where this renderer does not draw pictures this way, the reason where
    /// it cannot.
    fn import_planes(&mut self, planes: &(Dmabuf, Dmabuf)) -> Option<Result<Planes<Self::TextureId>, String>>;

    fn draw_yuv(
        frame: &mut Self::Frame<'_, '_>,
        element: &YuvElement<Self::TextureId>,
        dst: Rectangle<i32, Physical>,
        damage: &[Rectangle<i32, Physical>],
        opaque: &[Rectangle<i32, Physical>],
    ) -> Result<(), Self::Error>;
}

impl<R: YuvDraw> RenderElement<R> for YuvElement<R::TextureId> {
    fn draw(
        &self,
        frame: &mut R::Frame<'_, '_>,
        _src: Rectangle<f64, Buffer>,
        dst: Rectangle<i32, Physical>,
        damage: &[Rectangle<i32, Physical>],
        opaque: &[Rectangle<i32, Physical>],
    ) -> Result<(), R::Error> {
        R::draw_yuv(frame, self, dst, damage, opaque)
    }
}

/// pixman draws no YUV: its pictures are converted on the CPU, and no such element is made.
impl YuvDraw for PixmanRenderer {
    const DRAWS_PLANES: bool = false;
    fn import_planes(&mut self, _: &(Dmabuf, Dmabuf)) -> Option<Result<Planes<PixmanTexture>, String>> {
        None
    }
    fn draw_yuv(
        _: &mut Self::Frame<'_, '_>,
        _: &YuvElement<PixmanTexture>,
        _: Rectangle<i32, Physical>,
        _: &[Rectangle<i32, Physical>],
        _: &[Rectangle<i32, Physical>],
    ) -> Result<(), PixmanError> {
        Err(PixmanError::UnsupportedPixelFormat(Fourcc::Nv12))
    }
}

/// The conversion: luma from the bound texture, chroma (Cb, Cr in red and green) from the second
/// unit; offsets taken off, then the matrix.
const SHADER: &str = r#"#version 100
//_DEFINES_
#ifdef GL_FRAGMENT_PRECISION_HIGH
precision highp float;
#else
precision mediump float;
#endif
uniform sampler2D tex;
uniform sampler2D chroma;
uniform float alpha;
uniform vec3 offsets;
uniform mat3 yuv_to_rgb;
varying vec2 v_coords;
void main() {
    vec3 yuv = vec3(texture2D(tex, v_coords).r, texture2D(chroma, v_coords).rg) - offsets;
    gl_FragColor = vec4(clamp(yuv_to_rgb * yuv, 0.0, 1.0), 1.0) * alpha;
}
"#;

/// The compiled conversion, kept with the EGL context it was compiled in.
struct YuvProgram(GlesTexProgram);

/// The planes' textures, by luma view (kept with the EGL context; an entry goes with its view).
#[derive(Default)]
struct PlaneTextures(Vec<(WeakDmabuf, Planes<GlesTexture>)>);

impl<T: Clone> Clone for Planes<T> {
    fn clone(&self) -> Self {
        Planes { luma: self.luma.clone(), chroma: self.chroma.clone() }
    }
}

/// A single-plane dmabuf as a 2D texture (EGL imports R8 and GR88 for 2D sampling; smithay's own
/// import would make them external images where it cannot render to them).
fn texture_2d(renderer: &mut GlesRenderer, plane: &Dmabuf, what: &str) -> Result<GlesTexture, String> {
    let failed = |err: String| format!("the {what} plane as {:?}: {err}", plane.format().code);
    let display = renderer.egl_context().display().clone();
    let image = display.create_image_from_dmabuf(plane).map_err(|e| failed(e.to_string()))?;
    // SAFETY: a texture made and bound to the image on the renderer's current context; the
    // image is destroyed once the texture holds its storage (EGL keeps it for the texture).
    let made = renderer.with_context(|gl| unsafe {
        let mut tex = 0;
        gl.GenTextures(1, &mut tex);
        gl.BindTexture(ffi::TEXTURE_2D, tex);
        gl.EGLImageTargetTexture2DOES(ffi::TEXTURE_2D, image);
        let error = gl.GetError();
        gl.TexParameteri(ffi::TEXTURE_2D, ffi::TEXTURE_WRAP_S, ffi::CLAMP_TO_EDGE as i32);
        gl.TexParameteri(ffi::TEXTURE_2D, ffi::TEXTURE_WRAP_T, ffi::CLAMP_TO_EDGE as i32);
        gl.BindTexture(ffi::TEXTURE_2D, 0);
        if error != ffi::NO_ERROR {
            gl.DeleteTextures(1, &tex);
            return Err(format!("GL error 0x{error:x} binding the image"));
        }
        Ok(tex)
    });
    // SAFETY: the image was made on this display and nothing else refers to it.
    unsafe {
        smithay::backend::egl::ffi::egl::DestroyImageKHR(**display.get_display_handle(), image);
    }
    let tex = made.map_err(|e| failed(e.to_string()))?.map_err(failed)?;
    // SAFETY: `tex` is a texture of this renderer's context, owned by the GlesTexture from here.
    Ok(unsafe { GlesTexture::from_raw(renderer, None, true, tex, plane.size()) })
}

impl YuvDraw for GlesRenderer {
    const DRAWS_PLANES: bool = true;

    fn forget_gone_planes(&mut self) {
        if let Some(cache) = self.egl_context().user_data().get::<RefCell<PlaneTextures>>() {
            cache.borrow_mut().0.retain(|(weak, _)| !weak.is_gone());
        }
    }
    fn import_planes(&mut self, planes: &(Dmabuf, Dmabuf)) -> Option<Result<Planes<GlesTexture>, String>> {
        if self.egl_context().user_data().get::<Result<YuvProgram, String>>().is_none() {
            let program = self
                .compile_custom_texture_shader(
                    SHADER,
                    &[
                        UniformName::new("chroma", UniformType::_1i),
                        UniformName::new("offsets", UniformType::_3f),
                        UniformName::new("yuv_to_rgb", UniformType::Matrix3x3),
                    ],
                )
                .map(YuvProgram)
                .map_err(|err| format!("the conversion shader does not compile: {err}"));
            self.egl_context().user_data().insert_if_missing(|| program);
        }
        let compiled = self.egl_context().user_data().get::<Result<YuvProgram, String>>()?;
        if let Err(err) = compiled {
            return Some(Err(err.clone()));
        }
        let cache = self.egl_context().user_data().get_or_insert(|| RefCell::new(PlaneTextures::default()));
        let mut cache = cache.borrow_mut();
        cache.0.retain(|(weak, _)| !weak.is_gone());
        if let Some((_, planes)) = cache.0.iter().find(|(weak, _)| weak.upgrade().as_ref() == Some(&planes.0)) {
            return Some(Ok(planes.clone()));
        }
        drop(cache);
        let imported = texture_2d(self, &planes.0, "luma")
            .and_then(|luma| Ok(Planes { luma, chroma: texture_2d(self, &planes.1, "chroma")? }));
        if let Ok(textures) = &imported {
            let mut cache = self.egl_context().user_data().get::<RefCell<PlaneTextures>>()?.borrow_mut();
            if cache.0.len() >= VIEWS {
                cache.0.remove(0);
            }
            cache.0.push((planes.0.weak(), textures.clone()));
        }
        Some(imported)
    }

    fn draw_yuv(
        frame: &mut GlesFrame<'_, '_>,
        element: &YuvElement<GlesTexture>,
        dst: Rectangle<i32, Physical>,
        damage: &[Rectangle<i32, Physical>],
        opaque: &[Rectangle<i32, Physical>],
    ) -> Result<(), GlesError> {
        let Some(Ok(YuvProgram(program))) = frame.egl_context().user_data().get::<Result<YuvProgram, String>>() else {
            return Err(GlesError::ShaderCompileError);
        };
        let program = program.clone();
        let chroma = element.chroma.tex_id();
        let target = ffi::TEXTURE_2D;
        // SAFETY: plain GL state calls on the frame's current context; unit 1 is unbound again
        // below.
        frame.with_context(|gl| unsafe {
            gl.ActiveTexture(ffi::TEXTURE1);
            gl.BindTexture(target, chroma);
            gl.TexParameteri(target, ffi::TEXTURE_MIN_FILTER, ffi::LINEAR as i32);
            gl.TexParameteri(target, ffi::TEXTURE_MAG_FILTER, ffi::LINEAR as i32);
            gl.TexParameteri(target, ffi::TEXTURE_WRAP_S, ffi::CLAMP_TO_EDGE as i32);
            gl.TexParameteri(target, ffi::TEXTURE_WRAP_T, ffi::CLAMP_TO_EDGE as i32);
            gl.ActiveTexture(ffi::TEXTURE0);
        })?;
        let (matrix, offsets) = element.colour.gl_conversion();
        let drawn = frame.render_texture_from_to(
            &element.luma,
            element.src,
            dst,
            damage,
            opaque,
            Transform::Normal,
            1.0,
            Some(&program),
            &[
                Uniform::new("chroma", 1),
                Uniform::new("offsets", offsets),
                Uniform::new("yuv_to_rgb", UniformValue::Matrix3x3 { matrices: vec![matrix], transpose: false }),
            ],
        );
        frame.with_context(|gl| unsafe {
            gl.ActiveTexture(ffi::TEXTURE1);
            gl.BindTexture(target, 0);
            gl.ActiveTexture(ffi::TEXTURE0);
        })?;
        drawn
    }
}

/// Each picture's planes described as single-plane dmabufs, made once per decoder buffer and kept
/// while it lives (the renderer then finds its textures imported already).
#[derive(Default)]
pub struct PlaneViews(Vec<(WeakDmabuf, (Dmabuf, Dmabuf))>);

/// Decoder pools hold a few dozen buffers at most; more entries than this are old pools'.
const VIEWS: usize = 64;

impl PlaneViews {
    /// Forget the views of dmabufs that are gone.
    pub fn prune(&mut self) {
        self.0.retain(|(weak, _)| !weak.is_gone());
    }

    /// The R8 and GR88 views of an NV12 dmabuf (`None` for other formats or layouts).
    pub fn of(&mut self, nv12: &Dmabuf) -> Option<(Dmabuf, Dmabuf)> {
        self.prune();
        if let Some((_, views)) = self.0.iter().find(|(weak, _)| weak.upgrade().as_ref() == Some(nv12)) {
            return Some(views.clone());
        }
        let views = plane_views(nv12)?;
        if self.0.len() >= VIEWS {
            self.0.remove(0);
        }
        self.0.push((nv12.weak(), views.clone()));
        Some(views)
    }
}

/// An NV12 dmabuf's luma plane as R8 (w x h) and its chroma as GR88 (w/2 x h/2): the same
/// descriptors, offsets and strides.
fn plane_views(nv12: &Dmabuf) -> Option<(Dmabuf, Dmabuf)> {
    if nv12.format().code != Fourcc::Nv12 {
        return None;
    }
    let size = nv12.size();
    let fds: Vec<_> = nv12.handles().collect();
    let offsets: Vec<u32> = nv12.offsets().collect();
    let strides: Vec<u32> = nv12.strides().collect();
    if offsets.len() != 2 {
        return None;
    }
    let modifier = nv12.format().modifier;
    let view = |plane: usize, format: Fourcc, w: i32, h: i32| {
        let fd = fds.get(plane).or(fds.first())?.try_clone_to_owned().ok()?;
        let mut builder = Dmabuf::builder((w, h), format, modifier, DmabufFlags::empty());
        builder.add_plane(fd, 0, offsets[plane], strides[plane]);
        builder.build()
    };
    Some((view(0, Fourcc::R8, size.w, size.h)?, view(1, Fourcc::Gr88, (size.w + 1) / 2, (size.h + 1) / 2)?))
}
