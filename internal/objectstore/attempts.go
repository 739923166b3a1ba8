package objectstore

import (
	"context"
	"sync/atomic"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
	"github.com/go-logr/logr"

	"github.com/mocs-dev/upload-operator/internal/logging"
)

// Observer is told of every S3 attempt that failed and whether the SDK will
// retry it (metrics hook); nil is fine.
type Observer interface {
	S3AttemptFailed(operation string, attempt int, willRetry bool)
}

type attemptKey struct{}

// attemptLogging inserts two middlewares around the SDK's retry loop: one
// before it that counts attempts for the whole operation, one after it that
// sees each attempt's outcome and logs a failed attempt as a WARN line (with
// the request's correlation id, from the context's logger). The final failure
// is logged as ERROR by the caller that turns it into a 503.
func attemptLogging(maxAttempts int, obs Observer) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		if err := stack.Initialize.Add(middleware.InitializeMiddlewareFunc("mocupload.attemptCounter",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				return next.HandleInitialize(middleware.WithStackValue(ctx, attemptKey{}, new(atomic.Int32)), in)
			}), middleware.Before); err != nil {
			return err
		}
		return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("mocupload.attemptLogger",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleFinalize(ctx, in)
				if err == nil || ctx.Err() != nil {
					return out, md, err
				}
				attempt := 1
				if c, ok := middleware.GetStackValue(ctx, attemptKey{}).(*atomic.Int32); ok {
					attempt = int(c.Add(1))
				}
				op := awsmiddleware.GetOperationName(ctx)
				willRetry := attempt < maxAttempts && !IsClientError(err)
				if obs != nil && !IsClientError(err) {
					obs.S3AttemptFailed(op, attempt, willRetry)
				}
				if willRetry {
					logging.Warn(logr.FromContextOrDiscard(ctx), "S3 transient error; the SDK will retry",
						"operation", op, "attempt", attempt, "maxAttempts", maxAttempts, "error", err.Error())
				}
				return out, md, err
			}), "Retry", middleware.After)
	}
}
