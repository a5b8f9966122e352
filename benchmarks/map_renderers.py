"""Which way to draw 100,000 points in the map's page: the candidates measured in headless
Chromium (software rendering, as on a machine without a GPU).

    python benchmarks/map_renderers.py [--chromium /usr/bin/chromium] [--keep DIR]

Builds one page per candidate around the same 100,000 points (30 clusters, 10 colours) and
measures the time to the first frame and, over 120 frames of zooming and panning, the
interval between frames (requestAnimationFrame) and the script's own work per frame:

- own-canvas: a rasteriser in plain JavaScript (a disc per point into one ImageData, one
  putImageData), what tagger map's page does;
- own-webgl: plain WebGL, gl.POINTS from two buffers, transform in a uniform;
- regl-scatterplot 1.16.0 (with regl 2.1.1, pub-sub-es 3.0.0) and plotly.js-gl2d-dist-min
  3.7.0 (scattergl), fetched with `npm pack` into a temporary folder (not vendored).
"""

from __future__ import annotations

import argparse
import base64
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

PACKAGES = {"regl": "regl@2.1.1", "rs": "regl-scatterplot@1.16.0", "pubsub": "pub-sub-es@3.0.0",
            "plotly": "plotly.js-gl2d-dist-min@3.7.0"}
FILES = {"regl": "package/dist/regl.min.js", "rs": "package/dist/regl-scatterplot.min.js",
         "pubsub": "package/dist/index.js", "plotly": "package/plotly-gl2d.min.js"}

OWN_WEBGL = r"""// minimal own WebGL point renderer for the benchmark (same approach as the map's)
function ownRenderer(canvas, xy, rgba) {
  const gl = canvas.getContext('webgl', {antialias: false, preserveDrawingBuffer: true});
  const vs = `attribute vec2 p; attribute vec4 c; uniform vec4 t; uniform float s; varying vec4 vc;
    void main(){ gl_Position=vec4(p*t.xy+t.zw,0.,1.); gl_PointSize=s; vc=c; }`;
  const fs = `precision mediump float; varying vec4 vc; void main(){ vec2 d=gl_PointCoord-.5; if(dot(d,d)>.25) discard; gl_FragColor=vc; }`;
  const prog = gl.createProgram();
  for (const [type, src] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
    const sh = gl.createShader(type); gl.shaderSource(sh, src); gl.compileShader(sh); gl.attachShader(prog, sh);
  }
  gl.linkProgram(prog); gl.useProgram(prog);
  const pb = gl.createBuffer(); gl.bindBuffer(gl.ARRAY_BUFFER, pb); gl.bufferData(gl.ARRAY_BUFFER, xy, gl.STATIC_DRAW);
  const pl = gl.getAttribLocation(prog, 'p'); gl.enableVertexAttribArray(pl); gl.vertexAttribPointer(pl, 2, gl.FLOAT, false, 0, 0);
  const cb = gl.createBuffer(); gl.bindBuffer(gl.ARRAY_BUFFER, cb); gl.bufferData(gl.ARRAY_BUFFER, rgba, gl.STATIC_DRAW);
  const cl = gl.getAttribLocation(prog, 'c'); gl.enableVertexAttribArray(cl); gl.vertexAttribPointer(cl, 4, gl.UNSIGNED_BYTE, true, 0, 0);
  gl.enable(gl.BLEND); gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
  const tl = gl.getUniformLocation(prog, 't'), sl = gl.getUniformLocation(prog, 's');
  return (k, dx, dy) => { gl.viewport(0, 0, canvas.width, canvas.height); gl.clearColor(1,1,1,1); gl.clear(gl.COLOR_BUFFER_BIT);
    gl.uniform4f(tl, k, k, dx, dy); gl.uniform1f(sl, 4); gl.drawArrays(gl.POINTS, 0, xy.length / 2); };
}
"""

OWN_CANVAS = r"""// CPU rasteriser: points written into a Uint32 pixel buffer, one putImageData per frame
function ownCanvas(canvas, xy, rgba) {
  const ctx = canvas.getContext('2d'); const W = canvas.width, H = canvas.height;
  const img = ctx.createImageData(W, H); const px = new Uint32Array(img.data.buffer);
  const col = new Uint32Array(rgba.buffer); const n = xy.length / 2;
  // 3x3 disc-ish stamp offsets
  const stamp = [[0,-1],[-1,0],[0,0],[1,0],[0,1],[-1,-1],[1,-1],[-1,1],[1,1]];
  return (k, dx, dy) => {
    px.fill(0xffffffff);
    const sx = W / 2 * k, sy = -H / 2 * k, ox = W / 2 * (1 + dx), oy = H / 2 * (1 - dy);
    for (let i = 0; i < n; i++) {
      const x = (xy[2*i] * sx + ox) | 0, y = (xy[2*i+1] * sy + oy) | 0;
      if (x < 1 || y < 1 || x >= W - 1 || y >= H - 1) continue;
      const c = col[i] | 0xff000000, o = y * W + x;
      px[o] = c; px[o-1] = c; px[o+1] = c; px[o-W] = c; px[o+W] = c; px[o-W-1]=c; px[o-W+1]=c; px[o+W-1]=c; px[o+W+1]=c;
    }
    ctx.putImageData(img, 0, 0);
  };
}
"""


def npm_files(folder: Path) -> dict[str, str]:
    out = {}
    for key, spec in PACKAGES.items():
        try:
            name = subprocess.run(["npm", "pack", spec], cwd=folder, capture_output=True, text=True,
                                  check=True, timeout=300).stdout.strip().splitlines()[-1]
            with tarfile.open(folder / name) as tar:
                out[key] = tar.extractfile(FILES[key]).read().decode()
        except (OSError, subprocess.SubprocessError, KeyError) as e:
            print(f"{spec}: not measured ({e})")
    if "pubsub" in out:  # an ES module: made a classic script that sets window.createPubSub
        lines = [ln for ln in out["pubsub"].splitlines() if not ln.startswith("export default")]
        out["pubsub"] = "\n".join(ln.removeprefix("export ") for ln in lines) + "\nwindow.createPubSub = createPubSub;"
    return out


def build(folder: Path) -> list[str]:
    rng = np.random.default_rng(0)
    N = 100_000
    centres = rng.normal(size=(30, 2)) * 0.5
    xy = (centres[rng.integers(0, 30, N)] + rng.normal(size=(N, 2)) * 0.12).astype(np.float32)
    xy = np.clip(xy / np.abs(xy).max(), -1, 1).astype(np.float32)
    cat = rng.integers(0, 10, N)
    pal = np.array([[31,119,180],[255,127,14],[44,160,44],[214,39,40],[148,103,189],[140,86,75],[227,119,194],[127,127,127],[188,189,34],[23,190,207]], np.uint8)
    rgba = np.concatenate([pal[cat], np.full((N,1), 200, np.uint8)], 1)
    b64 = lambda a: base64.b64encode(a.tobytes()).decode()
    data = f"const XY_B64='{b64(xy)}', RGBA_B64='{b64(rgba)}', CAT_B64='{b64(cat.astype(np.uint8))}';"
    dec = "function dec(s, T){const b=atob(s), u=new Uint8Array(b.length); for(let i=0;i<b.length;i++)u[i]=b.charCodeAt(i); return new T(u.buffer);}"
    b64 = lambda a: base64.b64encode(a.tobytes()).decode()
    data = f"const XY_B64='{b64(xy)}', RGBA_B64='{b64(rgba)}', CAT_B64='{b64(cat.astype(np.uint8))}';"
    dec = ("function dec(s, T){const b=atob(s), u=new Uint8Array(b.length); for(let i=0;i<b.length;i++)"
           "u[i]=b.charCodeAt(i); return new T(u.buffer);}")
    loop = """
    function bench(drawFrame){ const ts=[], work=[]; let i=0; return new Promise(res=>{ function f(t){ ts.push(t); if(i<120){ const a=performance.now(); drawFrame(i++); work.push(performance.now()-a); requestAnimationFrame(f);} else { const d=ts.slice(2).map((x,j)=>x-ts[j+1]).sort((a,b)=>a-b); work.sort((a,b)=>a-b); res({median:d[d.length>>1], p95:d[Math.floor(d.length*.95)], work:work[work.length>>1], workp95:work[Math.floor(work.length*.95)]}); } } requestAnimationFrame(f); }); }
    """
    head = "<!doctype html><meta charset=utf-8><body style='margin:0'><div id=plot style='width:1200px;height:800px'></div><canvas id=c width=1200 height=800 style='width:1200px;height:800px'></canvas>"
    pages = {
     'own-webgl': """%HEAD%<script>%DATA%%DEC%%JS%%LOOP%
     const t0=performance.now(); const xy=dec(XY_B64,Float32Array), rgba=dec(RGBA_B64,Uint8Array); const draw=ownRenderer(document.getElementById('c'),xy,rgba); draw(1,0,0);
     const gl=document.getElementById('c').getContext('webgl'); gl.readPixels(0,0,1,1,gl.RGBA,gl.UNSIGNED_BYTE,new Uint8Array(4)); window.ready=performance.now();
     window.runBench=()=>bench(i=>draw(1+i*0.02, Math.sin(i/10)*0.2, 0));</script>""",
     'own-canvas': """%HEAD%<script>%DATA%%DEC%%JS2%%LOOP%
     const xy=dec(XY_B64,Float32Array), rgba=dec(RGBA_B64,Uint8Array); const draw=ownCanvas(document.getElementById('c'),xy,rgba); draw(1,0,0);
     requestAnimationFrame(()=>{window.ready=performance.now();});
     window.runBench=()=>bench(i=>draw(1+i*0.02, Math.sin(i/10)*0.2, 0));</script>""",
     'regl': """%HEAD%<script>%REGL%</script><script>%PUBSUB%; window.createPubSub=createPubSub;</script><script>%RS%</script><script>%DATA%%DEC%%LOOP%
     const xy=dec(XY_B64,Float32Array), cat=dec(CAT_B64,Uint8Array); const pts=new Array(xy.length/2); for(let i=0;i<pts.length;i++) pts[i]=[xy[2*i],xy[2*i+1],cat[i]];
     const sp=createScatterplot.default({canvas:document.getElementById('c'),width:1200,height:800,pointSize:4,pointColor:['#1f77b4','#ff7f0e','#2ca02c','#d62728','#9467bd','#8c564b','#e377c2','#7f7f7f','#bcbd22','#17becf'],colorBy:'valueA',opacity:0.8});
     sp.draw(pts).then(()=>{ requestAnimationFrame(()=>{window.ready=performance.now();}); });
     window.runBench=()=>bench(i=>{ sp.zoomToLocation([Math.sin(i/10)*0.2,0], 1/(1+i*0.02), {transition:false}); });</script>""",
     'plotly': """%HEAD%<script>%PLOTLY%</script><script>%DATA%%DEC%%LOOP%
     const xy=dec(XY_B64,Float32Array), rgba=dec(RGBA_B64,Uint8Array); const n=xy.length/2, x=new Float32Array(n), y=new Float32Array(n), col=new Array(n);
     for(let i=0;i<n;i++){x[i]=xy[2*i];y[i]=xy[2*i+1];col[i]=`rgb(${rgba[4*i]},${rgba[4*i+1]},${rgba[4*i+2]})`;}
     Plotly.newPlot('plot',[{type:'scattergl',mode:'markers',x,y,marker:{size:4,color:col,opacity:0.8}}],{width:1200,height:800,hovermode:'closest'}).then(()=>{ requestAnimationFrame(()=>{window.ready=performance.now();}); });
     window.runBench=()=>bench(i=>{ const k=1/(1+i*0.02), c=Math.sin(i/10)*0.2; Plotly.relayout('plot',{'xaxis.range':[c-k,c+k],'yaxis.range':[-k,k]}); });</script>""",
    }
    libs = npm_files(folder)
    subs = {"%HEAD%": head, "%DATA%": data, "%DEC%": dec, "%JS%": OWN_WEBGL, "%JS2%": OWN_CANVAS, "%LOOP%": loop,
            "%REGL%": libs.get("regl", ""), "%PUBSUB%": libs.get("pubsub", ""), "%RS%": libs.get("rs", ""),
            "%PLOTLY%": libs.get("plotly", "")}
    names = []
    for name, page in pages.items():
        if (name == "regl" and not {"regl", "rs", "pubsub"} <= set(libs)) or (name == "plotly" and "plotly" not in libs):
            continue
        for a, b in subs.items():
            page = page.replace(a, b)
        (folder / f"{name}.html").write_text(page)
        print(f"{name}: {len(page.encode()) // 1024} KiB page")
        names.append(name)
    return names


def measure(folder: Path, names: list[str], chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu",
                                                              "--disable-background-networking"])
        for name in names:
            for rep in range(2):
                pg = b.new_page(viewport={"width": 1200, "height": 1700})
                pg.goto((folder / f"{name}.html").as_uri())
                pg.wait_for_function("() => window.ready !== undefined", timeout=60000)
                ready = pg.evaluate("() => window.ready")
                r = pg.evaluate("() => window.runBench()")
                print(f"{name} round {rep}: first frame {ready:.0f} ms; frame interval median {r['median']:.1f} ms, "
                      f"p95 {r['p95']:.1f} ms; script per frame median {r['work']:.1f} ms, p95 {r['workp95']:.1f} ms",
                      flush=True)
                pg.close()
        b.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--keep", help="build the pages in this folder and keep them")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        measure(folder, build(folder), args.chromium)


if __name__ == "__main__":
    main()
