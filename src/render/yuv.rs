//! Decoded pictures composited by the GPU with their own matrix and range. EGL's YUV import
//! samples with its defaults (BT.601 limited; smithay passes it no colour hints), so instead each
//! plane of the NV12 dmabuf is imported as a texture of its own (R8 luma, GR88 chroma, the same
//! memory, no copy) and vitrine's shader converts with the picture's coefficients, the numbers
//! the CPU conversion and the planes use.

use smithay::backend::allocator::dmabuf::{Dmabuf, DmabufFlags, WeakDmabuf};
use smithay::backend::allocator::{Buffer as _, Fourcc};
use smithay::backend::renderer::element::{Element, Id, RenderElement};
use smithay::backend::renderer::gles::{
    ffi, GlesError, GlesFrame, GlesRenderer, GlesTexProgram, GlesTexture, Uniform, UniformName, UniformType,
    UniformValue,
};
use smithay::backend::renderer::pixman::{PixmanError, PixmanRenderer, PixmanTexture};
use smithay::backend::renderer::utils::{CommitCounter, OpaqueRegions};
use smithay::backend::renderer::{ImportDma, Renderer};
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
    external: bool,
    colour: Colour,
}

/// Imported planes: luma, chroma, and whether the renderer samples them as external images
/// (both alike).
pub struct Planes<T> {
    pub luma: T,
    pub chroma: T,
    pub external: bool,
}

impl<T> YuvElement<T> {
    pub fn new(
        id: Id,
        geometry: Rectangle<i32, Physical>,
        src: Rectangle<f64, Buffer>,
        planes: Planes<T>,
        colour: Colour,
    ) -> Self {
        YuvElement { id, geometry, src, luma: planes.luma, chroma: planes.chroma, external: planes.external, colour }
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
#if defined(EXTERNAL)
#extension GL_OES_EGL_image_external : require
#endif
#ifdef GL_FRAGMENT_PRECISION_HIGH
precision highp float;
#else
precision mediump float;
#endif
#if defined(EXTERNAL)
uniform samplerExternalOES tex;
uniform samplerExternalOES chroma;
#else
uniform sampler2D tex;
uniform sampler2D chroma;
#endif
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

impl YuvDraw for GlesRenderer {
    const DRAWS_PLANES: bool = true;
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
        // The renderer samples a dmabuf as an external image unless it can render to its format
        // (smithay's rule): the shader takes both planes one way or the other.
        let render_formats = self.egl_context().dmabuf_render_formats();
        let (luma_external, chroma_external) =
            (!render_formats.contains(&planes.0.format()), !render_formats.contains(&planes.1.format()));
        if luma_external != chroma_external {
            return Some(Err(format!(
                "EGL samples {:?} as {} and {:?} as {}",
                planes.0.format().code,
                if luma_external { "an external image" } else { "a texture" },
                planes.1.format().code,
                if chroma_external { "an external image" } else { "a texture" },
            )));
        }
        let import = |r: &mut GlesRenderer, plane: &Dmabuf, what: &str| {
            r.import_dmabuf(plane, None).map_err(|err| format!("the {what} plane as {:?}: {err}", plane.format().code))
        };
        Some(
            import(self, &planes.0, "luma").and_then(|luma| {
                Ok(Planes { luma, chroma: import(self, &planes.1, "chroma")?, external: luma_external })
            }),
        )
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
        let target = if element.external { ffi::TEXTURE_EXTERNAL_OES } else { ffi::TEXTURE_2D };
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
    /// The R8 and GR88 views of an NV12 dmabuf (`None` for other formats or layouts).
    pub fn of(&mut self, nv12: &Dmabuf) -> Option<(Dmabuf, Dmabuf)> {
        self.0.retain(|(weak, _)| !weak.is_gone());
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
