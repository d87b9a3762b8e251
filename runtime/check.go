package runtime

import (
	"context"
	"crypto/sha256"
	"fmt"
)

// Check validates spec and compiles its module exactly as Load would,
// without making it a function: a deploy path calls it to reject a bad
// module with the compiler's reason before anything is committed. The
// compiled code lands in the disk cache, so the Load that follows is
// cheap.
func (e *Engine) Check(ctx context.Context, spec FunctionSpec) error {
	if err := spec.normalize(); err != nil {
		return err
	}
	if len(spec.Module) > e.cfg.MaxModuleBytes {
		return fmt.Errorf("%w: module is %d bytes, the node accepts at most %d (Config.MaxModuleBytes)", ErrInvalidModule, len(spec.Module), e.cfg.MaxModuleBytes)
	}
	f := newFunction(e, spec, sha256.Sum256(spec.Module))
	defer f.close(ctx)
	_, _, err := f.ensureCompiled(ctx)
	return err
}
