// A link token as a QR code, drawn as an SVG built with DOM calls (no
// image load: the page's Content-Security-Policy allows none from data:).
// The matrix comes from qrcode-generator (npm); byte mode, level M.
import qrcode from 'qrcode-generator';

export const QR_TEXT_MAX = 512;   // a link token is far shorter

/** The dark modules, row by row (true = dark), with no quiet zone. */
export function qrMatrix(text: string): boolean[][] {
  if (text.length > QR_TEXT_MAX) throw new Error('text too long for a QR code here');
  const qr = qrcode(0, 'M');
  qr.addData(text, 'Byte');
  qr.make();
  const n = qr.getModuleCount();
  return Array.from({ length: n }, (_, r) => Array.from({ length: n }, (_, c) => qr.isDark(r, c)));
}

const SVG = 'http://www.w3.org/2000/svg';
const QUIET = 4;   // modules of white border, as the standard asks

export function qrSvg(text: string, label: string): SVGSVGElement {
  const m = qrMatrix(text);
  const size = m.length + 2 * QUIET;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${size} ${size}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.setAttribute('shape-rendering', 'crispEdges');
  const bg = document.createElementNS(SVG, 'rect');
  bg.setAttribute('width', String(size)); bg.setAttribute('height', String(size)); bg.setAttribute('fill', '#fff');
  svg.append(bg);
  let d = '';
  m.forEach((row, r) => row.forEach((dark, c) => { if (dark) d += `M${c + QUIET} ${r + QUIET}h1v1h-1z`; }));
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', d);
  path.setAttribute('fill', '#000');
  svg.append(path);
  return svg;
}
