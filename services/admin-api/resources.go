package adminapi

import (
	"net/http"

	"github.com/heraldhq/herald/pkg/httpapi"
)

func badRequest(field, msg string) error {
	return httpapi.NewProblem(http.StatusBadRequest, "the request is not valid", httpapi.FieldError{Field: field, Message: msg})
}
