"""Drawing of the procedural faces on a supersampled PIL canvas: head, hair, eyes, brows, nose, mouth.

Coordinates are fractions of the image side (x right, y down); the eye
centres lie at ``EYE_Y`` of the height (the aligned-crop convention).
"""

import math

import numpy as np
from PIL import Image, ImageDraw

EYE_Y = 0.40  # eye centres, fraction of the height (aligned-crop convention)
DARK = (35, 22, 20)


def mix(a, b, t):
    """Linear blend of two RGB colours; ``t=0`` gives ``a``."""
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def scale(c, f):
    return tuple(int(max(0, min(255, round(v * f)))) for v in c)



class _Canvas:
    """Thin wrapper over ImageDraw taking fractional coordinates."""

    def __init__(self, image):
        self.image = image
        self.size = image.size[0]
        self.draw = ImageDraw.Draw(image)

    def px(self, pts):
        """Fractional points -> flat list of pixel coordinates."""
        return (np.asarray(pts, dtype=np.float64).reshape(-1) * self.size).tolist()

    def width(self, w):
        return max(1, int(round(w * self.size)))

    def polygon(self, pts, fill):
        self.draw.polygon(self.px(pts), fill=fill)

    def ellipse(self, cx, cy, rx, ry, fill=None, outline=None, width=0.0):
        s = self.size
        box = [(cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s]
        self.draw.ellipse(box, fill=fill, outline=outline, width=self.width(width) if outline else 0)

    def line(self, pts, fill, width, round_caps=True):
        p = self.px(pts)
        w = self.width(width)
        self.draw.line(p, fill=fill, width=w, joint="curve")
        if round_caps and w > 2:
            r = w / 2.0
            for x, y in ((p[0], p[1]), (p[-2], p[-1])):
                self.draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)


def _head_outline(idn, n=120):
    """Points of the head oval (superellipse, narrowed towards the chin)."""
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(theta), np.sin(theta)
    e = 2.0 / idn.squareness
    x = np.sign(c) * np.abs(c) ** e * idn.face_width
    y = np.sign(s) * np.abs(s) ** e * idn.face_height
    lower = s > 0
    x = np.where(lower, x * (1 - idn.jaw_taper * np.abs(s) ** 1.6), x)
    return np.stack([0.5 + x, idn.face_center_y + y], axis=1)


def _hair_geometry(idn):
    rx = idn.face_width + idn.hair_volume
    top = idn.face_center_y - idn.face_height - idn.hair_volume - 0.01
    cy = 0.345  # temples: where the hair mass meets the face sides
    return rx, top, cy


def _draw_background(img, idn):
    """Vertical gradient: lighter at the top, darker at the bottom."""
    s = img.size[0]
    ramp = np.linspace(1.12, 0.82, s)[:, None] * np.asarray(idn.background, np.float64)[None, :]
    column = np.clip(ramp, 0, 255).astype(np.uint8)[:, None, :]
    img.paste(Image.fromarray(column).resize((s, s), Image.NEAREST))


def _draw_hair_back(c, idn):
    if idn.hair_style == "bald":
        return
    rx, top, cy = _hair_geometry(idn)
    ry = cy - top
    if idn.hair_style in ("medium", "long"):
        bottom = 0.66 if idn.hair_style == "medium" else 0.98
        wide = rx + (0.015 if idn.hair_style == "medium" else 0.035)
        c.polygon(
            [(0.5 - wide, cy), (0.5 + wide, cy), (0.5 + wide * 0.96, bottom), (0.5 - wide * 0.96, bottom)],
            fill=idn.hair_color,
        )
        c.ellipse(0.5, bottom, wide * 0.96, 0.03, fill=idn.hair_color)
    # upper half of the hair mass (the lower half hides behind the face)
    s = c.size
    box = [(0.5 - rx) * s, (cy - ry) * s, (0.5 + rx) * s, (cy + ry) * s]
    c.draw.chord(box, 180, 360, fill=idn.hair_color)
    # short sideburns down to the ears
    c.polygon(
        [(0.5 - rx, cy - 0.01), (0.5 - idn.face_width + 0.01, cy - 0.01),
         (0.5 - idn.face_width + 0.015, 0.43), (0.5 - rx + 0.01, 0.42)],
        fill=idn.hair_color,
    )
    c.polygon(
        [(0.5 + rx, cy - 0.01), (0.5 + idn.face_width - 0.01, cy - 0.01),
         (0.5 + idn.face_width - 0.015, 0.43), (0.5 + rx - 0.01, 0.42)],
        fill=idn.hair_color,
    )


def _hairline_y(idn, u):
    """Hairline height at ``u`` in [-1, 1] across the hair mass."""
    _, _, cy = _hair_geometry(idn)
    top = idn.hairline_y
    a = np.abs(u)
    if idn.hairline == "fringe":
        top = top + 0.06
        y = top + (cy - top) * a**6
    elif idn.hairline == "side":
        top = top + 0.03
        y = top + (cy - top) * a**3 + 0.05 * idn.hair_side * u
    elif idn.hairline == "receding":
        top = top - 0.04
        y = top + (cy - top) * a**1.4 - 0.035 * np.sin(np.pi * a) ** 2
    else:
        y = top + (cy - top) * a**2.2
    return np.minimum(y, cy)


def _draw_hair_front(c, idn):
    if idn.hair_style == "bald":
        return
    rx, top, cy = _hair_geometry(idn)
    u = np.linspace(-1, 1, 61)
    line = np.stack([0.5 + rx * u, _hairline_y(idn, u)], axis=1)
    theta = np.linspace(0, np.pi, 40)
    arc = np.stack([0.5 + rx * np.cos(theta), cy - (cy - top) * np.sin(theta)], axis=1)
    c.polygon(np.concatenate([line, arc]), fill=idn.hair_color)


def _draw_body(c, idn):
    neck = scale(idn.skin, 0.8)
    nw = idn.face_width * 0.55
    c.polygon([(0.5 - nw, 0.6), (0.5 + nw, 0.6), (0.5 + nw * 1.08, 1.01), (0.5 - nw * 1.08, 1.01)], fill=neck)
    c.ellipse(0.5, 1.14, 0.52, 0.2, fill=idn.shirt)
    c.ellipse(0.5, 0.94, nw * 1.05, 0.045, fill=neck)  # neckline


def _draw_ears(c, idn):
    ear = scale(idn.skin, 0.9)
    for side in (-1, 1):
        x = 0.5 + side * idn.face_width * 0.97
        c.ellipse(x, 0.485, 0.038, 0.068, fill=ear)
        c.ellipse(x + side * 0.008, 0.49, 0.016, 0.04, fill=scale(idn.skin, 0.78))


def _shade(idn, strength):
    """Skin darkened by ``strength`` in [0, 1] towards a crease colour."""
    return mix(idn.skin, DARK, min(1.0, max(0.0, strength)))


def _draw_face(c, idn):
    outline = _head_outline(idn)
    c.polygon(outline, fill=idn.skin)
    c.line(np.concatenate([outline, outline[:1]]), fill=scale(idn.skin, 0.86), width=0.006, round_caps=False)


def _draw_beard(c, idn, mouth):
    if idn.beard == "none":
        return
    if idn.beard == "full":
        color = mix(idn.hair_color, DARK, 0.1)
    else:  # stubble / moustache: a shadow of the hair colour on the skin
        color = mix(mix(idn.skin, DARK, 0.22), idn.hair_color, 0.15)
    x, yu_out = mouth["x"], mouth["upper_out"]
    if idn.beard in ("full", "stubble"):
        outline = _head_outline(idn, 160)
        y0 = 0.5 if idn.beard == "full" else 0.54
        lower = outline[outline[:, 1] > y0]
        # sort the lower outline by angle: right side -> chin -> left side
        ang = np.arctan2(lower[:, 1] - idn.face_center_y, lower[:, 0] - 0.5)
        lower = lower[np.argsort(ang)]
        left_x, right_x = float(lower[-1, 0]), float(lower[0, 0])
        mw = float(x[-1] - 0.5)
        top = [
            (left_x, y0),
            (0.5 - idn.face_width * 0.62, idn.nose_tip_y + 0.04),
            (0.5 - mw - 0.02, idn.mouth_y - 0.01),
            (0.5, idn.nose_tip_y + 0.03),
            (0.5 + mw + 0.02, idn.mouth_y - 0.01),
            (0.5 + idn.face_width * 0.62, idn.nose_tip_y + 0.04),
            (right_x, y0),
        ]
        c.polygon([tuple(p) for p in lower] + top, fill=color)
    # moustache follows the upper lip
    k = len(x)
    u = np.linspace(-1, 1, k)
    top = [(xx, y - 0.02 - 0.008 * (1 - uu * uu)) for xx, y, uu in zip(x, yu_out, u)]
    bottom = [(xx, y + 0.002) for xx, y in zip(x, yu_out)]
    c.polygon(top + bottom[::-1], fill=color)


def _mouth_geometry(idn, a, n=41):
    t = np.linspace(-1, 1, n)
    mw = idn.mouth_width * (1 + 0.38 * a.mouth_width)
    x = 0.5 + mw * t
    k = 0.06 if a.mouth_curve > 0 else 0.045
    yc = idn.mouth_y - a.mouth_curve * k * t**2
    # a smile also lifts the mouth a little; a frown drops it
    yc = yc - 0.006 * a.mouth_curve
    # one-sided sneer
    side_t = np.clip(t * idn.sneer_side, 0, None)
    yc = yc - a.asym * 0.022 * side_t**1.5
    op = max(a.mouth_open, 0.0)
    expo = 1.0 - 0.5 * min(max(a.mouth_round, 0.0), 1.0)
    shape = (1 - t**2) ** expo
    # upper lip raise: centred towards the sneer side
    lift = np.exp(-(((t - 0.35 * idn.sneer_side) / 0.55) ** 2)) * (1 - t**2) ** 0.5
    yu = yc - 0.018 * op * shape - 0.018 * a.upper_lip * lift
    yl = yc + 0.07 * op * shape
    press = 1 - 0.6 * min(max(a.lip_press, 0.0), 1.0)
    taper = (1 - t**2) ** 0.6
    pout = min(max(a.pout, 0.0), 1.3)
    tu = idn.lip_thickness * 0.75 * press
    tl = idn.lip_thickness * press * (1 + 0.45 * pout)
    yl = yl - 0.006 * pout * (1 - t**2)
    bow = 0.3 * tu * np.exp(-((t / 0.14) ** 2))
    upper_out = yu - tu * taper + bow
    lower_out = yl + tl * taper
    return dict(t=t, x=x, center=yc, upper_in=yu, lower_in=yl, upper_out=upper_out,
                lower_out=lower_out, open=op)


def _draw_mouth(c, idn, a, m):
    x, t = m["x"], m["t"]
    P = lambda ys: list(zip(x, ys))  # noqa: E731
    c.polygon(P(m["upper_out"]) + P(m["lower_out"])[::-1], fill=idn.lip_color)
    edge = mix(idn.lip_color, DARK, 0.55)
    gap = m["lower_in"] - m["upper_in"]
    if np.max(gap) > 1e-4:
        c.polygon(P(m["upper_in"]) + P(m["lower_in"])[::-1], fill=(58, 20, 24))
        # upper teeth
        tooth_h = 0.017
        inner = np.abs(t) < 0.86
        ti = np.where(inner)[0]
        yt0 = m["upper_in"][ti]
        yt1 = np.minimum(yt0 + tooth_h, m["lower_in"][ti])
        teeth = (236, 232, 220)
        c.polygon(list(zip(x[ti], yt0)) + list(zip(x[ti], yt1))[::-1], fill=teeth)
        if a.lower_teeth > 0:
            yb1 = m["lower_in"][ti]
            yb0 = np.maximum(yb1 - tooth_h * 0.8 * min(1.0, a.lower_teeth), yt1)
            c.polygon(list(zip(x[ti], yb0)) + list(zip(x[ti], yb1))[::-1], fill=scale(teeth, 0.9))
        c.line(P(m["upper_in"]), fill=edge, width=0.004, round_caps=False)
        c.line(P(m["lower_in"]), fill=edge, width=0.004, round_caps=False)
    else:
        c.line(P(m["center"]), fill=edge, width=0.006)
    # corner creases make the curve readable at low resolution
    for i in (0, len(x) - 1):
        cx, cy = x[i], m["center"][i]
        c.ellipse(cx, cy, 0.005, 0.005, fill=_shade(idn, 0.35))


def _draw_chin(c, idn, a, m):
    if a.chin <= 0:
        return
    y = float(m["lower_out"][len(m["x"]) // 2]) + 0.035
    col = _shade(idn, 0.3 * min(a.chin, 1.2))
    pts = [(0.5 + 0.035 * s, y + 0.006 * s * s - 0.004 * a.chin) for s in np.linspace(-1, 1, 9)]
    c.line(pts, fill=col, width=0.006)


def _draw_folds(c, idn, a, m):
    if a.fold <= 0:
        return
    col = _shade(idn, 0.32 * min(a.fold, 1.2))
    for side in (-1, 1):
        i = 0 if side < 0 else len(m["x"]) - 1
        corner = (m["x"][i], m["center"][i])
        start = (0.5 + side * (idn.nose_width + 0.018), idn.nose_tip_y - 0.018)
        end = (corner[0] + side * 0.018, corner[1] + 0.018)
        mid = ((start[0] + end[0]) / 2 + side * 0.022, (start[1] + end[1]) / 2)
        pts = [
            ((1 - s) ** 2 * start[0] + 2 * s * (1 - s) * mid[0] + s**2 * end[0],
             (1 - s) ** 2 * start[1] + 2 * s * (1 - s) * mid[1] + s**2 * end[1])
            for s in np.linspace(0, 1, 12)
        ]
        c.line(pts, fill=col, width=0.007)


def _draw_cheeks(c, idn, a):
    if a.cheek <= 0:
        return
    blush = mix(idn.skin, (214, 96, 96), 0.18 * min(a.cheek, 1.2))
    for side in (-1, 1):
        ex = 0.5 + side * idn.eye_spacing / 2
        c.ellipse(ex + side * 0.015, EYE_Y + 0.12, 0.06, 0.04, fill=blush)


def _draw_nose(c, idn, a):
    tip = idn.nose_tip_y - 0.01 * a.nose_wrinkle
    nw = idn.nose_width * (1 + 0.3 * a.nostril_flare)
    shade = _shade(idn, 0.28)
    # bridge shadow on the left (light from the right)
    c.line([(0.5 - 0.02, EYE_Y + 0.03), (0.5 - 0.022, tip - 0.06), (0.5 - nw * 0.55, tip - 0.02)],
           fill=_shade(idn, 0.12), width=0.008)
    # tip
    tr = nw * (0.45 + 0.25 * idn.nose_round)
    s = c.size
    box = [(0.5 - tr) * s, (tip - 0.012 - tr * 0.7) * s, (0.5 + tr) * s, (tip - 0.012 + tr * 0.7) * s]
    c.draw.arc(box, 20, 160, fill=shade, width=c.width(0.005))
    # wings and nostrils
    for side in (-1, 1):
        wx = 0.5 + side * nw * 0.82
        box = [(wx - nw * 0.38) * s, (tip - 0.03) * s, (wx + nw * 0.38) * s, (tip + 0.008) * s]
        start, end = (260, 470) if side > 0 else (70, 280)
        c.draw.arc(box, start, end, fill=shade, width=c.width(0.006))
        c.ellipse(0.5 + side * nw * 0.45, tip + 0.002, nw * 0.26, nw * 0.13, fill=_shade(idn, 0.6))
    if a.nose_wrinkle > 0:
        col = _shade(idn, 0.4 * min(a.nose_wrinkle, 1.2))
        for k in range(3):
            y = EYE_Y + 0.035 + 0.018 * k
            pts = [(0.5 + 0.034 * s_, y - 0.007 * (1 - s_ * s_)) for s_ in np.linspace(-1, 1, 9)]
            c.line(pts, fill=col, width=0.004)


def _eye_geometry(idn, a, side, n=31):
    ex = 0.5 + side * idn.eye_spacing / 2
    w = idn.eye_size
    t = np.linspace(-1, 1, n)
    x = ex + w * t
    outer = np.clip(t * side, 0, None)  # 0 at inner half, -> 1 at outer corner
    open_f = max(0.12, 1 + a.eye_open)
    h_up = w * idn.eye_height * open_f
    h_lo = w * 0.34 * max(0.25, 1 + 0.7 * a.eye_open) * (1 - 0.45 * min(a.lower_lid, 1.3))
    yu = EYE_Y - h_up * (1 - t**2) ** 0.75 + a.lid_droop * 0.3 * h_up * outer * (1 - t**2) ** 0.5
    yl = EYE_Y + h_lo * (1 - t**2) ** 0.85
    return ex, w, x, yu, yl


def _draw_eye(c, idn, a, side):
    ex, w, x, yu, yl = _eye_geometry(idn, a, side)
    s = c.size
    pts = list(zip(x, yu)) + list(zip(x, yl))[::-1]
    pad = 2
    x0 = int(math.floor((ex - w) * s)) - pad
    x1 = int(math.ceil((ex + w) * s)) + pad
    y0 = int(math.floor(float(np.min(yu)) * s)) - pad
    y1 = int(math.ceil(float(np.max(yl)) * s)) + pad
    size = (max(1, x1 - x0), max(1, y1 - y0))
    local = (np.asarray(pts) * s - (x0, y0)).reshape(-1).tolist()
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).polygon(local, fill=255)
    layer = Image.new("RGB", size, (240, 236, 230))
    ld = ImageDraw.Draw(layer)
    r = 0.45 * w * s
    cx, cy = ex * s - x0, (EYE_Y - 0.04 * w + 0.18 * w * a.gaze_down) * s - y0
    ld.ellipse([cx - r, cy - r, cx + r, cy + r], fill=idn.eye_color)
    ld.ellipse([cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85],
               outline=scale(idn.eye_color, 0.8), width=max(1, int(r * 0.12)))
    rp = r * 0.45
    ld.ellipse([cx - rp, cy - rp, cx + rp, cy + rp], fill=(14, 10, 10))
    rh = r * 0.2
    hx, hy = cx + r * 0.35, cy - r * 0.35
    ld.ellipse([hx - rh, hy - rh, hx + rh, hy + rh], fill=(250, 250, 250))
    c.image.paste(layer, (x0, y0), mask)
    # lids
    c.line(list(zip(x, yu)), fill=(30, 20, 20), width=0.009)
    c.line(list(zip(x, yl)), fill=_shade(idn, 0.4), width=0.004)
    # upper lid crease
    crease = [(xx, yy - 0.012) for xx, yy in zip(x[4:-4], yu[4:-4])]
    c.line(crease, fill=_shade(idn, 0.22), width=0.004)


def _draw_eye_extras(c, idn, a, side):
    ex, w, x, yu, yl = _eye_geometry(idn, a, side)
    if a.crow > 0:
        col = _shade(idn, 0.35 * min(a.crow, 1.2))
        ox = ex + side * (w + 0.012)
        for ang in (-0.45, 0.0, 0.45):
            c.line([(ox, EYE_Y), (ox + side * 0.028 * math.cos(ang), EYE_Y + 0.028 * math.sin(ang))],
                   fill=col, width=0.005)
    if a.lower_lid > 0:
        col = _shade(idn, 0.25 * min(a.lower_lid, 1.2))
        pts = [(xx, yy + 0.016) for xx, yy in zip(x[5:-5], yl[5:-5])]
        c.line(pts, fill=col, width=0.005)


def _brow_points(idn, a, side, n=21):
    ex = 0.5 + side * idn.eye_spacing / 2
    w = idn.eye_size
    inner_x = ex - side * (w * 0.95 + 0.014 * a.brow_squeeze)
    outer_x = ex + side * w * 1.4
    base = EYE_Y - w * 1.12
    t = np.linspace(0, 1, n)  # 0 = inner end, 1 = outer end
    x = inner_x + (outer_x - inner_x) * t
    arch = idn.brow_arch + 0.012 * max(a.brow_raise, 0.0)
    y = (base - 0.045 * a.brow_raise - 0.042 * a.brow_inner * (1 - t) ** 1.4
         - arch * np.sin(np.pi * t**0.8) + 0.012 * max(a.brow_inner, 0.0) * t)
    th = idn.brow_thickness * (1.05 - 0.5 * t)
    return x, y, th, base


def _draw_brows(c, idn, a):
    for side in (-1, 1):
        x, y, th, _ = _brow_points(idn, a, side)
        top = list(zip(x, y - th / 2))
        bottom = list(zip(x, y + th / 2))
        c.polygon(top + bottom[::-1], fill=idn.brow_color)


def _draw_forehead(c, idn, a):
    if a.glabella > 0:
        col = _shade(idn, 0.4 * min(a.glabella, 1.2))
        _, y, _, base = _brow_points(idn, a, 1)
        for side in (-1, 1):
            c.line([(0.5 + side * 0.02, base + 0.004), (0.5 + side * 0.014, base + 0.04)], fill=col, width=0.005)
    if a.forehead > 0:
        col = _shade(idn, 0.3 * min(a.forehead, 1.2))
        _, y, _, _ = _brow_points(idn, a, 1)
        top = float(np.min(y))
        for k in range(3):
            yy = top - 0.03 - 0.02 * k
            pts = [(0.5 + 0.15 * s_, yy + 0.012 * s_ * s_) for s_ in np.linspace(-1, 1, 13)]
            c.line(pts, fill=col, width=0.005)


def _draw_glasses(c, idn):
    if not idn.glasses:
        return
    s = c.size
    for side in (-1, 1):
        ex = 0.5 + side * idn.eye_spacing / 2
        w = idn.eye_size
        box = [(ex - w * 1.35) * s, (EYE_Y - w * 0.85) * s, (ex + w * 1.35) * s, (EYE_Y + w * 0.95) * s]
        c.draw.rounded_rectangle(box, radius=w * 0.6 * s, outline=idn.glasses_color, width=c.width(0.008))
        arm_x = ex + side * w * 1.35
        c.line([(arm_x, EYE_Y - w * 0.2), (0.5 + side * idn.face_width, EYE_Y - w * 0.35)],
               fill=idn.glasses_color, width=0.008)
    gap = idn.eye_spacing / 2 - idn.eye_size * 1.35
    c.line([(0.5 - gap, EYE_Y - 0.01), (0.5, EYE_Y - 0.018), (0.5 + gap, EYE_Y - 0.01)],
           fill=idn.glasses_color, width=0.007)


def _supersample(resolution):
    if resolution <= 256:
        return 4
    if resolution <= 512:
        return 2
    return 1


def draw_face(identity, a, resolution):
    """Draws ``identity`` with the actions ``a`` (see ``synthetic_faces.expression_actions``)
    as uint8 ``(resolution, resolution, 3)``: supersampled, then box-filtered down."""
    size = resolution * _supersample(resolution)
    img = Image.new("RGB", (size, size), identity.background)
    _draw_background(img, identity)
    c = _Canvas(img)
    _draw_hair_back(c, identity)
    _draw_body(c, identity)
    _draw_ears(c, identity)
    _draw_face(c, identity)
    mouth = _mouth_geometry(identity, a)
    _draw_cheeks(c, identity, a)
    _draw_forehead(c, identity, a)
    _draw_folds(c, identity, a, mouth)
    _draw_chin(c, identity, a, mouth)
    _draw_beard(c, identity, mouth)
    _draw_hair_front(c, identity)
    _draw_nose(c, identity, a)
    for side in (-1, 1):
        _draw_eye(c, identity, a, side)
        _draw_eye_extras(c, identity, a, side)
    _draw_brows(c, identity, a)
    _draw_mouth(c, identity, a, mouth)
    _draw_glasses(c, identity)
    if size != resolution:
        img = img.reduce(size // resolution)  # box filter: supersampled anti-aliasing
    return np.array(img, dtype=np.uint8)  # a writable copy
