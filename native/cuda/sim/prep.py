# prep.py CUDA_DIR OUT_DIR: copies CUDA_DIR/*.cu(h) and CUDA_DIR/tests/* into OUT_DIR (.cu -> .cpp),
# turning each launch kernel<<<grid, block[, smem[, stream]]>>>(args) into
# ::sim::launch(kernel, grid, block, args) for the CPU simulator (run.sh). A file is rewritten only
# when its text changes, so make-style timestamps stay valid.
import glob, os, sys


def convert(s):
    out, i = '', 0
    while True:
        j = s.find('<<<', i)
        if j < 0:
            return out + s[i:]
        st, depth = j, 0
        while True:  # back over the kernel's name, template arguments included
            c = s[st - 1]
            if c == '>': depth += 1
            elif c == '<': depth -= 1
            elif depth == 0 and not (c.isalnum() or c in '_:'): break
            st -= 1
        e = s.find('>>>(', j)
        if e < 0: sys.exit('prep.py: a <<< without >>>(')
        parts, depth, cur = [], 0, ''
        for ch in s[j + 3:e]:
            if ch in '(<': depth += 1
            if ch in ')>': depth -= 1
            if ch == ',' and depth == 0: parts.append(cur); cur = ''
            else: cur += ch
        parts.append(cur)
        rest = s[e + 4:]  # the launch's closing ')' stays
        sep = '' if rest.lstrip().startswith(')') else ', '
        out += s[i:st] + '::sim::launch(' + s[st:j] + ', ' + parts[0].strip() + ', ' + parts[1].strip() + sep
        i = e + 4


src, dst = sys.argv[1], sys.argv[2]
for sub in ('', 'tests'):
    os.makedirs(os.path.join(dst, sub), exist_ok=True)
    for f in glob.glob(os.path.join(src, sub, '*.cu')) + glob.glob(os.path.join(src, sub, '*.cuh')) + glob.glob(os.path.join(src, sub, '*.h')):
        name = os.path.basename(f)
        if name == 'memplan.h': continue  # plain C++, not CUDA
        text = convert(open(f).read())
        path = os.path.join(dst, sub, name[:-3] + '.cpp' if name.endswith('.cu') else name)
        if not os.path.exists(path) or open(path).read() != text:
            open(path, 'w').write(text)
