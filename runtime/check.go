package runtime

import "context"

// Check validates spec and compiles its module exactly as Load would,
// without making it a function: a deploy path calls it to reject a bad
// module with the compiler's reason before anything is committed. The
// compiled code lands in the disk cache, so the Load that follows is
// cheap.
func (e *Engine) Check(ctx context.Context, spec FunctionSpec) error {
	f, err := e.compile(ctx, spec)
	if err != nil {
		return err
	}
	f.close(ctx)
	return nil
}
